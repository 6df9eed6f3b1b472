"""scnn neurobench: NeuroBench's own Benchmark on a checkpoint, written next to its results.json, equal to
scnn's own metrics; the integer footprint of a quantised model counted by hand."""

import json
import warnings

import pytest
import torch

from scnn.interop.neurobench import integer_footprint_bytes

warnings.filterwarnings("ignore", module="brevitas")


def test_neurobench_command_equals_scnns_metrics(tiny_snn_run, tiny_fsdd, tmp_path, capsys):
    from scnn.cli import main as scnn
    from scnn.quant import quantize
    from scnn.quant.integer import export_integer, save_integer
    from scnn.train.evaluate import load_trained_model

    import shutil

    torch.set_num_threads(1)
    _, data = tiny_fsdd
    run = tmp_path / "run"  # a copy: the session's run folder stays as the other tests expect it
    run.mkdir()
    for name in ("best.pt", "results.json"):
        shutil.copy(tiny_snn_run / name, run / name)
    model, _ = load_trained_model(run / "best.pt")
    save_integer(*export_integer(quantize(model, calibration_data=data.train[0][:32], weight_bits=4)),
                 tmp_path / "integer")
    result = scnn(["neurobench", str(run / "best.pt"), "--max-samples", "60", "--no-progress",
                   "--integer-artefact", str(tmp_path / "integer")])
    assert "NeuroBench on 60 test recordings" in capsys.readouterr().out
    saved = json.loads((run / "neurobench.json").read_text())  # next to results.json
    assert saved["samples"] == 60 and saved["scnn"] == json.loads(json.dumps(result["scnn"]))
    bench, ours = result["neurobench"], result["scnn"]
    assert bench["ClassificationAccuracy"] == pytest.approx(ours["accuracy"], abs=1e-6)
    assert bench["Footprint"] == ours["footprint_bytes"]["float32"]
    assert bench["ConnectionSparsity"] == ours["connection_sparsity"]
    assert bench["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"], abs=1e-9)
    assert 0 < bench["ActivationSparsity"] < 1
    assert ours["effective_acs"] > 0
    for theirs, mine in (("Effective_ACs", "effective_acs"), ("Effective_MACs", "effective_macs"), ("Dense", "dense")):
        assert bench["SynapticOperations"][theirs] == pytest.approx(ours[mine], abs=0.5)
    # 4-bit weights packed two per byte, int32 biases, int16 thresholds, leak shifts and requantisation shifts
    assert saved["integer_footprint_bytes"] == {
        "weights": 27 + 345_600 + 640, "biases": 4 * (6 + 128 + 10), "neuron_constants": 3 * 2 + 3 + 144,
        "total": 27 + 345_600 + 640 + 4 * 144 + 153}


def test_integer_footprint_of_per_channel_fixed_leak():
    from scnn.models import create_model
    from scnn.quant import quantize
    from scnn.quant.integer import export_integer

    torch.manual_seed(0)
    model = create_model("6C3-P2-32FC-10FC", per_channel_beta=True).eval()
    quantized = quantize(model, calibration_data=torch.randn(8, 1, 32, 32), leak="fixed", per_channel=True)
    footprint = integer_footprint_bytes(*export_integer(quantized))
    weights = 54 + 6 * 15 * 15 * 32 + 32 * 10
    # one int16 threshold per layer; per-channel beta: one int16 leak multiplier and one shift per channel
    assert footprint["weights"] == weights and footprint["biases"] == 4 * 48
    assert footprint["neuron_constants"] == 3 * 2 + 2 * 48 + 48
