"""Metrics: exact dense MACs, SynOps on hand-made spikes, agreement with NeuroBench on real FSDD."""

import pytest
import torch
from torch import nn

from scnn.features import Normalizer, extract_features, feature_config
from scnn.data import list_fsdd
from scnn.metrics import (LayerActivity, activation_sparsity, connection_sparsity, dense_macs, energy_estimate,
                          footprint_bytes, profile_model, record_activity, snntorch_sequential, synaptic_operations)
from scnn.models import create_model

# Hand-computed MACs of one pass over a 32x32 input (output positions x fan-in x filters).
CONV_6C3 = 30 * 30 * 6 * (1 * 3 * 3)          # 48,600
CONV_16C3_A = 28 * 28 * 16 * (6 * 3 * 3)      # 677,376 (Model A: no pooling)
FC_A = 16 * 28 * 28 * 128 + 128 * 64 + 64 * 10  # 1,614,464
FC_B = 6 * 30 * 30 * 128 + 128 * 10             # 692,480
CONV_16C3_CONTROL = 13 * 13 * 16 * (6 * 3 * 3)  # 146,016 (after 2x2 pooling: 15x15 -> 13x13)
FC_CONTROL = 16 * 6 * 6 * 128 + 128 * 64 + 64 * 10  # 82,560


@pytest.mark.parametrize("name, steps, as_executed, per_step", [
    ("model_a", 1, CONV_6C3 + CONV_16C3_A + FC_A, CONV_6C3 + CONV_16C3_A + FC_A),
    ("model_a", 10, CONV_6C3 + 10 * (CONV_16C3_A + FC_A), 10 * (CONV_6C3 + CONV_16C3_A + FC_A)),
    ("model_b", 10, CONV_6C3 + 10 * FC_B, 10 * (CONV_6C3 + FC_B)),
    ("control_cnn", 1, CONV_6C3 + CONV_16C3_CONTROL + FC_CONTROL, CONV_6C3 + CONV_16C3_CONTROL + FC_CONTROL),
])
def test_dense_macs_match_hand_counts(name, steps, as_executed, per_step):
    model = create_model(name) if name == "control_cnn" else create_model(name, num_steps=steps)
    macs = dense_macs(model, (1, 32, 32))
    assert macs["as_executed"] == as_executed and macs["per_step"] == per_step
    assert macs["flops_as_executed"] == 2 * as_executed
    assert sum(macs["per_layer"].values()) == as_executed
    if name == "model_a" and steps == 1:
        assert as_executed == 2_340_440  # "about 2.34 M", not the reference code's 28.085 M


def test_synops_on_hand_made_spikes():
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight[0, 0] = 0.0  # one absent synapse
    for spikes, expected_acs in [(torch.zeros(2, 4), 0), (torch.ones(2, 4), 2 * 11), (torch.tensor([[1., 0, 0, 0]] * 2), 2 * 2)]:
        activity = [LayerActivity("fc", linear, spikes, None)]
        ops = synaptic_operations(activity, batch_size=2)
        assert ops["effective_acs"] * 2 == expected_acs and ops["effective_macs"] == 0
        assert ops["dense"] == 12  # 4 inputs x 3 outputs per sample
    real = [LayerActivity("fc", linear, torch.full((2, 4), 0.5), None)]
    assert synaptic_operations(real, batch_size=2)["effective_macs"] == 11


def test_all_ones_spikes_give_the_dense_count():
    conv = nn.Conv2d(2, 3, 3)
    activity = [LayerActivity("conv", conv, torch.ones(5, 2, 8, 8), None)]
    ops = synaptic_operations(activity, batch_size=5)
    assert ops["effective_acs"] == ops["dense"] == 6 * 6 * 3 * 2 * 9


def test_static_metrics():
    model = create_model("model_b")
    with torch.no_grad():
        model.blocks[2].synapse.weight.zero_()
    assert connection_sparsity(model) == pytest.approx(1280 / (54 + 691200 + 1280), rel=1e-6)
    footprint = footprint_bytes(model)
    assert footprint["int8"] == (54 + 691200 + 1280) + 4 * (6 + 128 + 10)
    assert footprint["float32"] >= 4 * 692_678
    energy = energy_estimate(effective_macs=10, effective_acs=100, dense_macs=1000, precision="int8")
    assert energy["synaptic_pj"] == pytest.approx(10 * 0.2 + 100 * 0.03) and energy["dense_pj"] == pytest.approx(200)
    assert energy_estimate(1, 0, 0, energies_pj={"float32_mac": 1.0})["synaptic_pj"] == 1.0


@pytest.fixture(scope="module")
def fsdd_batch(fsdd_dir):
    paths = [r.path for r in list_fsdd(fsdd_dir)[::150]]  # 20 recordings, two of every digit
    features = extract_features(paths, feature_config("default"), workers=1, progress=False).features
    return torch.from_numpy(Normalizer.fit(features)(features)).unsqueeze(1)


@pytest.mark.parametrize("name", ["model_a", "model_b"])
def test_synops_and_sparsity_agree_with_neurobench(fsdd_batch, name):
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import SNNTorchModel
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    steps = 5
    model = create_model(name, num_steps=steps, beta=0.8, threshold=0.5)
    sequence = fsdd_batch.unsqueeze(1).repeat(1, steps, 1, 1, 1)  # NeuroBench wants [B, T, ...]
    loader = DataLoader(TensorDataset(sequence, torch.zeros(len(sequence), dtype=torch.long)), batch_size=10)
    benchmark = Benchmark(SNNTorchModel(snntorch_sequential(model)), loader, [], [],
                          [[], [SynapticOperations, ActivationSparsity]])
    reference = benchmark.run(quiet=True)
    activity = record_activity(model, fsdd_batch)
    ours = synaptic_operations(activity, len(fsdd_batch), first_layer_steps=steps)  # NeuroBench's convention
    assert ours["effective_acs"] > 0
    assert ours["effective_acs"] == pytest.approx(reference["SynapticOperations"]["Effective_ACs"], abs=0.5)
    assert ours["effective_macs"] == pytest.approx(reference["SynapticOperations"]["Effective_MACs"], abs=0.5)
    assert ours["dense"] == pytest.approx(reference["SynapticOperations"]["Dense"], abs=0.5)
    assert activation_sparsity(activity)["overall"] == pytest.approx(reference["ActivationSparsity"], abs=1e-9)


def test_profile_model_hoisting_convention(fsdd_batch):
    model = create_model("model_b", num_steps=4)
    profile = profile_model(model, fsdd_batch, batch_size=8)
    first = profile.synaptic_operations["per_layer"]["blocks.0"]
    assert first["kind"] == "macs" and first["dense"] == CONV_6C3
    assert profile.synaptic_operations_per_step["per_layer"]["blocks.0"]["dense"] == 4 * CONV_6C3
    assert profile.synaptic_operations["dense"] == profile.dense_macs["as_executed"]
    assert 0.0 < profile.activation_sparsity["overall"] < 1.0 and profile.num_samples == 20
    assert profile.membrane_updates == 4 * (6 * 30 * 30 + 128 + 10)


def test_a_model_fed_a_sequence_records_its_first_input_per_step():
    """Only under static input does the first layer run once: a model given a sequence ([T, B, C, H, W],
    ``input_kind="sequence"``, direct encoding) runs it at every step, and the first layer's recorded input
    (what SynOps count) is the whole sequence, time folded into the batch."""
    from scnn.metrics import record_activity

    torch.manual_seed(0)
    sequence = create_model("model_b", num_steps=4, input_kind="sequence")
    assert sequence.input_kind == "sequence" and create_model("model_b").input_kind == "static"
    first = record_activity(sequence, torch.randn(4, 2, 1, 32, 32))[0]
    assert first.synapse_input.shape == (8, 1, 32, 32)
