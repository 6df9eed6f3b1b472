"""benchmarks/bench_engine.py: SpikingJelly's twin computes the same network, the grid's rows, targets,
memory and figure (the timing itself is the lead's to run, see docs/engine.md)."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scnn.models import create_model
from scnn.result_tables import load_table, read_table

REPO = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("bench_engine", REPO / "benchmarks" / "bench_engine.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)

SPIKINGJELLY_MISSING = bench.spikingjelly_missing()
needs_spikingjelly = pytest.mark.skipif(SPIKINGJELLY_MISSING is not None, reason=str(SPIKINGJELLY_MISSING))


def _lively(name: str, num_steps: int):
    """A preset whose later layers spike too (random weights x 4 after the first: every layer 10-30 %)."""
    torch.manual_seed(0)
    model = create_model(name, num_steps=num_steps)
    with torch.no_grad():
        for block in list(model.blocks)[1:]:
            for parameter in block.synapse.parameters():
                parameter.mul_(4)
    return model


def _soft_reset_reference(model, inputs):
    """The model's layers stepped one by one with the immediate (soft) reset written out:
    ``U = beta U + I; S = U >= thr; U -= S thr``. Returns every layer's spikes [T, B, ...] and the
    classifier's membrane before its reset [T, B, classes]."""
    config, blocks = model.config, model.blocks
    membranes = [None] * len(blocks)
    spikes = [[] for _ in blocks]
    classifier_membrane = []
    with torch.no_grad():
        for _ in range(config.num_steps):
            h = inputs
            for index, block in enumerate(blocks):
                current = block.pool(block.synapse(h))
                previous = membranes[index] if membranes[index] is not None else torch.zeros_like(current)
                membrane = config.beta * previous + current
                h = (membrane >= config.threshold).float()
                membranes[index] = membrane - h * config.threshold
                spikes[index].append(h)
            classifier_membrane.append(membrane)
    return [torch.stack(s) for s in spikes], torch.stack(classifier_membrane)


@needs_spikingjelly
@pytest.mark.parametrize("name", ["model_a", "model_b"])
def test_spikingjelly_twin_is_the_leaky_neuron_with_immediate_reset(name):
    """SpikingJelly's LIFNode(tau 2, decay_input False, v_reset None) is U = 0.5 U + I, S = U >= 1,
    U -= S: identical spikes layer by layer over six steps, membranes and logits to float tolerance."""
    model = _lively(name, 6)
    inputs = torch.randn(3, 1, 32, 32) * 4
    with torch.no_grad():
        twin_output = bench.SpikingJellyTwin(model)(inputs, record=True)
    spikes, membrane = _soft_reset_reference(model, inputs)
    assert len(twin_output.layer_spikes) == len(spikes) == len(model.blocks)
    for layer, (ours, theirs) in enumerate(zip(twin_output.layer_spikes, spikes)):
        assert torch.equal(ours, theirs), f"layer {layer}: spikes differ"
        assert 0.05 < float(ours.mean()) < 0.5, f"layer {layer} is silent or saturated: a weak test"
    # membranes to float32 rounding: the twin's dense products run on T * B rows at once
    torch.testing.assert_close(twin_output.membrane, membrane, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(twin_output.logits, membrane.sum(0), rtol=1e-6, atol=1e-5)
    # ... and the scnn model's delayed reset is another neuron: it subtracts the threshold one step later.
    assert not torch.equal(model(inputs, record=True).layer_spikes[1], twin_output.layer_spikes[1])


@needs_spikingjelly
@pytest.mark.parametrize("name", ["model_a", "model_b"])
def test_spikingjelly_twin_equals_the_scnn_model_at_one_step(name):
    """With T = 1 no reset has acted yet, so the delayed and the immediate reset agree: the twin's
    spikes are the engine's and its logits equal to float tolerance (layer by layer)."""
    model = _lively(name, 1)
    inputs = torch.randn(4, 1, 32, 32) * 4
    with torch.no_grad():
        ours, theirs = model(inputs, record=True), bench.SpikingJellyTwin(model)(inputs, record=True)
    for layer, (a, b) in enumerate(zip(ours.layer_spikes, theirs.layer_spikes)):
        assert torch.equal(a, b) and float(a.mean()) > 0.05, f"layer {layer}"
    torch.testing.assert_close(theirs.logits, ours.logits, rtol=1e-5, atol=1e-5)


@needs_spikingjelly
def test_spikingjelly_twin_shares_the_parameters_and_trains_them():
    torch.manual_seed(0)
    model = create_model("model_b", num_steps=4)
    twin = bench.SpikingJellyTwin(model)
    assert {id(p) for p in twin.parameters()} == {id(p) for p in model.parameters()}
    before = model.blocks[1].synapse.weight.detach().clone() if hasattr(model.blocks[1].synapse, "weight") else None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    bench.training_step(twin, optimizer, torch.randn(4, 1, 32, 32) * 4, torch.randint(0, 10, (4,)))
    after = [p for p in model.parameters() if p.grad is not None]
    assert after and any(float(p.grad.abs().sum()) > 0 for p in after), "the twin's backward reached the weights"
    if before is not None:
        assert not torch.equal(before, model.blocks[1].synapse.weight)


@needs_spikingjelly
def test_spikingjelly_twin_refuses_what_lifnode_cannot_express():
    with pytest.raises(ValueError, match="alif"):
        bench.SpikingJellyTwin(create_model("model_b", num_steps=4, neuron="alif"))
    with pytest.raises(ValueError, match="not a spiking SpecNet"):
        bench.SpikingJellyTwin(create_model("streaming", input_shape=(1, 20, 4)))
    with pytest.raises(ValueError, match="fixed tau"):
        bench.SpikingJellyTwin(create_model("model_b", num_steps=4, learn_beta=True))


def test_missed_targets_names_each_miss_and_skips_what_was_not_measured():
    row = {"train_speedup": 2.4, "train_sj_speedup": 2.0, "infer_speedup": 6.0, "infer_sj_speedup": None,
           "train_mem_engine_mib": 10.0, "train_mem_ref_mib": 12.0, "train_mem_sj_mib": 9.5}
    assert bench.missed_targets(row) == ["train_speedup<2.5", "train_mem_engine_mib>train_mem_sj_mib"]
    row.update(train_speedup=3.0, train_mem_sj_mib=None)
    assert bench.missed_targets(row) == []


def test_a_cell_without_spikingjelly_says_why(monkeypatch):
    monkeypatch.setattr(bench, "spikingjelly_missing", lambda: "SpikingJelly is not installed (test)")
    row = bench.measure("model_b", 2, 2, repeats=1, threads=1, memory=False, peak_gflops=100.0)
    assert row["spikingjelly_absent"] == "SpikingJelly is not installed (test)"
    assert row["train_sj_speedup"] is None and row["infer_sj_samples_s"] is None
    assert row["train_speedup"] > 0 and row["misses"]  # measured targets only; a string either way


def test_streaming_cell_runs_against_its_step_loop():
    model, reference, inputs, labels = bench.build("streaming_rleaky", 5, 3)
    assert inputs.shape == (3, 1, bench.STREAMING_COEFFICIENTS, 5)
    with torch.no_grad():
        torch.testing.assert_close(reference(inputs).logits, model(inputs).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # three memory subprocesses and the run: about 20 s alone, a minute on a busy machine
def test_grid_run_writes_table_memory_and_figure(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "bench_engine.py"), "--models", "model_b", "--steps", "2",
               "--batches", "4", "--repeats", "1", "--threads", "1", "--no-epoch", "--no-profile", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = load_table(tmp_path / "bench_engine.csv", "engine")
    (row,) = loaded.rows
    assert (row["model"], row["num_steps"], row["batch_size"]) == ("model_b", 2, 4)
    assert row["train_mem_ref_mib"] is not None and row["train_mem_engine_mib"] is not None
    if SPIKINGJELLY_MISSING is None:
        assert row["spikingjelly_absent"] is None and row["train_sj_speedup"] > 0 and row["train_mem_sj_mib"] is not None
    else:
        assert SPIKINGJELLY_MISSING.split(" (")[0] in result.stdout
    assert row["misses"] == (";".join(bench.missed_targets(row)) or "none")
    assert 0 < row["train_matmul_ratio"] and loaded.metadata["targets"] == bench.TARGETS
    assert not (tmp_path / "bench_engine_profile.csv").exists(), "--no-profile"
    assert (tmp_path / "bench_engine_grid.png").stat().st_size > 10_000


def test_every_cell_that_misses_a_target_is_profiled():
    rows = [{"model": "model_b", "num_steps": 2, "batch_size": 3, "misses": "infer_speedup<5", "train_matmul_ratio": 0.1,
             "infer_matmul_ratio": 0.2},
            {"model": "model_b", "num_steps": 3, "batch_size": 2, "misses": "none", "train_matmul_ratio": 0.1,
             "infer_matmul_ratio": 0.2}]
    profiles = bench.cell_profiles(["model_b"], rows, fixed=None)
    cells = {(entry["num_steps"], entry["batch_size"], entry["phase"]) for entry in profiles}
    assert cells == {(2, 3, "infer")}, "only the missing cell, only the phase it misses"
    assert all(entry["self_ms_per_step"] >= 0 and 0 <= entry["share"] <= 1 for entry in profiles)
    rows[1]["misses"] = "train_speedup<2.5;train_mem_engine_mib>train_mem_ref_mib"
    cells = {(entry["num_steps"], entry["batch_size"], entry["phase"])
             for entry in bench.cell_profiles(["model_b"], rows, fixed=None)}
    assert cells == {(2, 3, "infer"), (3, 2, "train")}
