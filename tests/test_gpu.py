"""The same checks on a CUDA device, where there is one (skipped on CPU-only machines such as CI).

`--device auto` must pick the GPU and give the same model there: the engine against the
step-by-step snntorch reference, the SSM's parallel against its recurrent mode, and the
standard trainer end to end.
"""

import pytest
import torch

from scnn.models import create_model
from scnn.models.reference import ReferenceNet
from scnn.train import DataConfig, TrainConfig, resolve_device, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture
def no_tf32():
    """Full float32 convolutions and matmuls, as resolve_device sets them: cuDNN's default TF32
    rounds inputs to 10 mantissa bits, and the folded [T*B] convolution and the per-step one
    then round differently (5.5 % of Model A's spikes differed on an H200)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    assert resolve_device("auto").type == "cuda"
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name", ["model_a", "model_b"])
def test_engine_matches_snntorch_reference_on_gpu(name, no_tf32):
    torch.manual_seed(0)
    model = create_model(name, num_steps=10, beta=0.8, threshold=0.4, learn_beta=True).cuda()
    x = torch.randn(8, 1, 32, 32, device="cuda") * 2
    with torch.no_grad():
        fast, reference = model(x, record=True), ReferenceNet(model)(x)
    assert fast.spikes.sum() > 0
    # Spikes may differ where a membrane lands within float32 rounding of the threshold, since
    # cuBLAS sums in another order than the per-step reference: allow one in 10^4.
    assert (fast.spikes != reference.spikes).float().mean() < 1e-4
    assert torch.allclose(fast.membrane, reference.membrane, atol=1e-4)
    model(x).membrane.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_ssm_parallel_and_recurrent_modes_agree_on_gpu():
    torch.manual_seed(0)
    model = create_model("ssm_tiny", input_shape=(1, 32, 40)).cuda().eval()
    x = torch.randn(3, 1, 32, 40, device="cuda")
    with torch.no_grad():
        parallel = model(x).logits
        model.reset()
        for frame in range(40):
            model.step(x[:, 0, :, frame])
        recurrent = model.streamed_logits()
    assert torch.allclose(parallel, recurrent, atol=1e-4)


@pytest.mark.parametrize("name", ["model_b", "ssm_tiny"])
def test_trainer_runs_on_gpu(tmp_path, name):
    from tests.test_training import synthetic_data

    results = train(TrainConfig(model=name, epochs=2, batch_size=8, lr=1e-2, device="auto"), DataConfig(),
                    tmp_path, progress=False, data=synthetic_data())
    assert results["test_accuracy"] > 0.25
