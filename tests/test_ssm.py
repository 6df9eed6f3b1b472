"""SSM baseline: parallel vs recurrent modes, discretisation, streaming, downsampling, parameter counts."""

import pytest
import torch

from scnn.models import count_parameters, create_model
from scnn.models.ssm import DiagonalSSM, SSMBlock, hippo_n_eigenvalues


def test_parallel_and_recurrent_modes_agree():
    torch.manual_seed(0)
    layer = DiagonalSSM(features=8, state_size=16, dt_min=0.01, dt_max=0.5)
    u = torch.randn(3, 50, 8)
    with torch.no_grad():
        parallel = layer(u)
        layer.reset()
        recurrent = torch.stack([layer.step(u[:, k]) for k in range(50)], dim=1)
    assert torch.allclose(parallel, recurrent, atol=1e-4)


def test_discretisation_matches_matrix_exponential():
    """ZOH of the equivalent real system: [[A, B], [0, 0]] exponentiated gives (A_bar, B_bar)."""
    torch.manual_seed(1)
    layer = DiagonalSSM(features=3, state_size=4)
    lambda_bar, b_bar = layer.discretize()
    eigenvalues = torch.complex(-torch.exp(layer.log_neg_real), layer.imag).detach().to(torch.complex128)
    steps = torch.exp(layer.log_dt).detach().to(torch.float64)
    b = torch.view_as_complex(layer.b.detach().contiguous()).to(torch.complex128)
    for mode in range(layer.num_modes):
        block = torch.zeros(4, 4, dtype=torch.complex128)
        block[0, 0] = eigenvalues[mode]
        block[0, 1:] = b[mode]
        expm = torch.linalg.matrix_exp(block * steps[mode])
        assert torch.allclose(lambda_bar[mode].to(torch.complex128), expm[0, 0], atol=1e-6)
        assert torch.allclose(b_bar[mode].to(torch.complex128), expm[0, 1:], atol=1e-6)


def test_hippo_initialisation_is_stable():
    eigenvalues = hippo_n_eigenvalues(16)
    assert eigenvalues.shape == (16,) and (eigenvalues.real == -0.5).all()
    assert abs(sorted(eigenvalues.imag)[0] + sorted(eigenvalues.imag)[-1]) < 1e-9  # conjugate pairs


def test_streaming_in_chunks_equals_one_pass():
    torch.manual_seed(2)
    model = create_model("ssm_tiny").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        whole = model(x).logits
        model.reset()
        for start in range(0, 32, 5):  # chunks of 5 frames, state carried between calls
            for frame in range(start, min(start + 5, 32)):
                model.step(x[:, 0, :, frame])
        assert torch.allclose(model.streamed_logits(), whole, atol=1e-4)


def test_downsampled_layers_shorten_the_sequence_and_scale_the_step():
    block = SSMBlock(features=4, state_size=4, downsample=4)
    assert block(torch.randn(2, 103, 4)).shape == (2, 25, 4)
    assert block.ssm.step_scale == 4.0
    model = create_model("ssm_raw", input_shape=(1, 1, 800), downsample=[8, 4, 5])
    assert model(torch.randn(2, 1, 1, 800)).logits.shape == (2, 10)
    model.eval()
    x = torch.randn(1, 1, 1, 800)
    with torch.no_grad():
        whole = model(x).logits
        model.reset()
        for sample in range(800):
            model.step(x[:, 0, :, sample])
        assert torch.allclose(model.streamed_logits(), whole, atol=1e-4)


@pytest.mark.parametrize("name, expected, limit", [("ssm_small", 36_810, 50_000), ("ssm_tiny", 4_870, 10_000),
                                                   ("ssm_raw_small", 34_826, 50_000), ("ssm_raw", 9_226, 10_000)])
def test_preset_parameter_counts(name, expected, limit):
    model = create_model(name)
    assert count_parameters(model) == expected <= limit


def test_ssm_trains_through_the_standard_trainer(tmp_path):
    from tests.test_training import synthetic_data
    from scnn.train import DataConfig, TrainConfig, train

    results = train(TrainConfig(model="ssm_tiny", epochs=2, batch_size=8, lr=1e-2), DataConfig(), tmp_path,
                    progress=False, data=synthetic_data())
    assert results["num_params"] < 10_000 and results["test_accuracy"] > 0.25
