"""Quantisation: the Brevitas twin, bit widths, the integer reference, exports, QAT, clear errors."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from scnn.quant.integer import export_integer, load_integer, quantize_input, run_integer, save_integer, shift_round
from scnn.models import create_model
from scnn.quant import QuantConfig, leak_shift_for, quantize, quantized_from_dict, quantized_to_dict
from scnn.result_tables import read_table
from tests.test_training import synthetic_data

warnings.filterwarnings("ignore", module="brevitas")
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

VARIANTS = [
    ("model_b", {}, {}),
    ("model_a", {"num_steps": 4}, {}),
    ("control_cnn", {}, {}),
    ("model_b", {}, {"per_channel": True, "weight_bits": 4, "state_bits": 6, "act_bits": 5}),
    ("model_b", {"beta": 0.8}, {"leak": "fixed"}),
    ("6C3-P2-32FC-10FC", {"reset_mechanism": "zero", "beta": 0.9, "per_channel_beta": True}, {}),
    ("model_b", {"readout": "spike_count", "num_steps": 5}, {"weight_bits": 2}),
]


def calibrated(name, model_overrides, quant_options, seed=0, samples=32):
    torch.manual_seed(seed)
    model = create_model(name, **model_overrides).eval()
    x = torch.randn(samples, 1, 32, 32) * 1.5
    return model, quantize(model, calibration_data=x, **quant_options), x


def integer_matches(quantized, x):
    """Run both; assert identical logits (exactly), predictions and per-layer spike counts."""
    with torch.no_grad():
        output = quantized(x, record=True)
    description, arrays = export_integer(quantized)
    result = run_integer(description, arrays, quantize_input(description, x.numpy()))
    np.testing.assert_array_equal(result.real_logits, output.logits.double().numpy())
    np.testing.assert_array_equal(result.predictions, output.logits.argmax(1).numpy())
    for mine, theirs in zip(output.layer_spikes, result.spike_counts):
        np.testing.assert_array_equal(mine.reshape(mine.shape[0], mine.shape[1], -1).sum((0, 2)).numpy(), theirs)
    return output, result


@pytest.mark.parametrize("name,model_overrides,quant_options", VARIANTS)
def test_integer_reference_reproduces_the_brevitas_model_exactly(name, model_overrides, quant_options):
    _, quantized, x = calibrated(name, model_overrides, quant_options)
    output, result = integer_matches(quantized, x)
    if quantized.config.spiking:
        assert sum(int(c.sum()) for c in result.spike_counts) > 0, "no spikes: the comparison would be vacuous"


def test_twin_has_the_same_structure_and_carries_the_weights():
    model, quantized, _ = calibrated("model_a", {"num_steps": 2}, {})
    assert len(quantized.blocks) == len(model.blocks) == 5
    for float_block, quant_block in zip(model.blocks, quantized.blocks):
        float_layer = float_block.synapse[-1] if isinstance(float_block.synapse, torch.nn.Sequential) \
            else float_block.synapse
        assert torch.equal(quant_block.synapse.weight, float_layer.weight)
        assert torch.equal(quant_block.synapse.bias, float_layer.bias)
        weight = quant_block.synapse.quant_weight()
        step = float(weight.scale.detach().max())
        assert (weight.value - float_layer.weight).abs().max() <= step  # within one quantisation step
        assert type(quant_block.synapse).__name__ == ("QuantConv2d" if float_layer.weight.dim() == 4 else "QuantLinear")


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_bit_widths_are_honoured(bits):
    _, quantized, x = calibrated("model_b", {}, {"weight_bits": bits, "act_bits": bits, "state_bits": max(bits, 3)})
    description, arrays = export_integer(quantized)
    limit = 2 ** (bits - 1) - 1
    for index in range(3):
        weights = arrays[f"layer{index}.weight"]
        assert weights.dtype == np.int8 and weights.min() >= -limit and weights.max() <= limit
        assert np.abs(weights).max() >= limit // 2  # the range is used, not collapsed to zero
        assert arrays[f"layer{index}.bias"].dtype == np.int32
    codes = quantize_input(description, x.numpy())
    assert codes.min() >= -(limit + 1) and codes.max() <= limit
    state_limit = 2 ** (max(bits, 3) - 1)
    with torch.no_grad():
        membrane = quantized(x).membrane
    lif = quantized.quant_lif_layers()[-1]
    units = membrane / 2.0 ** lif.state_exponent
    assert torch.equal(units, units.round()) and units.min() >= -state_limit and units.max() <= state_limit - 1


def test_leak_shift_and_rounding_helpers():
    assert leak_shift_for(torch.tensor([0.0, 0.5, 0.75, 0.9, 0.95, 1.0])).tolist() == [0, 1, 2, 3, 4, 15]
    values = np.arange(-70, 71)
    for shift in (-2, 0, 1, 2, 3):
        expected = torch.round(torch.tensor(values, dtype=torch.float64) * 2.0 ** -shift).numpy()
        np.testing.assert_array_equal(shift_round(values, shift), expected)


def test_exported_onnx_gives_the_same_predictions(tmp_path):
    from scnn.quant.exports import export_onnx, onnx_predictions

    _, quantized, x = calibrated("model_b", {"num_steps": 4}, {})
    path = export_onnx(quantized, x[:2], tmp_path / "model.onnx")
    with torch.no_grad():
        expected = quantized(x).logits.argmax(1).numpy()
    np.testing.assert_array_equal(onnx_predictions(path, x), expected)  # a batch of another size than exported


def test_exported_qonnx_gives_the_same_predictions(tmp_path):
    from scnn.quant.exports import export_qonnx_model, qonnx_predictions

    _, quantized, x = calibrated("model_b", {"num_steps": 3}, {"weight_bits": 4})
    path = export_qonnx_model(quantized, x[:8], tmp_path / "model.qonnx.onnx")
    with torch.no_grad():
        expected = quantized(x[:13]).logits.argmax(1).numpy()
    np.testing.assert_array_equal(qonnx_predictions(path, x[:13]), expected)  # 13: a padded last chunk


def test_qonnx_check_silences_only_qonnxs_shape_warnings(tmp_path, monkeypatch):
    """qonnx's "Output shapes disagree" protobuf dumps are dropped where the check runs; other warnings pass."""
    import qonnx.core.onnx_exec

    from scnn.quant.exports import export_qonnx_model, qonnx_predictions

    _, quantized, x = calibrated("model_b", {"num_steps": 3}, {"weight_bits": 4})
    path = export_qonnx_model(quantized, x[:8], tmp_path / "model.qonnx.onnx")
    real_execute = qonnx.core.onnx_exec.execute_onnx
    with warnings.catch_warnings(record=True) as unfiltered:  # qonnx itself, without our filter: it does warn
        warnings.simplefilter("always")
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.infer_shapes import InferShapes

        model = ModelWrapper(str(path)).transform(InferShapes())
        real_execute(model, {model.graph.input[0].name: x[:8].numpy()})
    assert any("Output shapes disagree" in str(w.message) for w in unfiltered), "qonnx no longer warns: drop the filter"

    def execute_and_warn(*args, **kwargs):
        warnings.warn("our own warning", UserWarning)
        return real_execute(*args, **kwargs)

    monkeypatch.setattr(qonnx.core.onnx_exec, "execute_onnx", execute_and_warn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictions = qonnx_predictions(path, x[:13])
    messages = [str(w.message) for w in caught]
    assert not any("Output shapes disagree" in message for message in messages)
    assert messages.count("our own warning") == 2, messages  # 13 samples: two chunks of the exported batch of 8
    with torch.no_grad():
        np.testing.assert_array_equal(predictions, quantized(x[:13]).logits.argmax(1).numpy())


def test_saved_artefacts_round_trip(tmp_path):
    _, quantized, x = calibrated("model_b", {"num_steps": 4}, {"per_channel": True})
    description, arrays = export_integer(quantized)
    save_integer(description, arrays, tmp_path / "integer")
    loaded_description, loaded_arrays = load_integer(tmp_path / "integer")
    assert json.loads(json.dumps(description)) == {k: v for k, v in loaded_description.items() if k != "arrays"}
    codes = quantize_input(description, x.numpy())
    np.testing.assert_array_equal(run_integer(loaded_description, loaded_arrays, codes).logits,
                                  run_integer(description, arrays, codes).logits)
    rebuilt = quantized_from_dict(quantized_to_dict(quantized), quantized.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logits, quantized(x).logits)


def test_quantisation_aware_training_learns_through_the_quantisers():
    """STE gradients reach weights through rounding, saturation and the integer LIF: the loss falls."""
    from scnn.quant.workflow import fine_tune
    from scnn.train import TrainConfig

    data = synthetic_data(per_class=16)
    torch.manual_seed(0)
    model = create_model("model_b", num_steps=4, num_classes=4)
    quantized = quantize(model, weight_bits=4, calibration_data=data.train[0])
    before = quantized.blocks[1].synapse.weight.detach().clone()
    history = fine_tune(quantized, data, TrainConfig(epochs=4, lr=2e-3, batch_size=16, seed=0), progress=False)
    assert not torch.equal(before, quantized.blocks[1].synapse.weight)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_accuracy"] > 0.9


def test_clear_errors():
    with pytest.raises(ValueError, match="weight_bits must be an integer from 2 to 8, got 9"):
        QuantConfig(weight_bits=9)
    with pytest.raises(ValueError, match="state_bits"):
        QuantConfig(state_bits=1)
    with pytest.raises(ValueError, match=r"state_bits \+ leak_bits <= 24"):
        QuantConfig(leak="fixed", state_bits=16, leak_bits=12)
    with pytest.raises(ValueError, match="leak must be one of"):
        QuantConfig(leak="multiply")
    with pytest.raises(ValueError, match="spec model"):
        quantize(create_model("ssm_tiny"))
    _, quantized, x = calibrated("model_b", {"num_steps": 2}, {})
    with pytest.raises(ValueError, match=r"static input \[B, C, H, W\]"):
        quantized(x.unsqueeze(0).repeat(2, 1, 1, 1, 1))
    description, arrays = export_integer(quantized)
    with pytest.raises(ValueError, match="integer input codes"):
        run_integer(description, arrays, x.numpy())
    from scnn.quant.workflow import QuantRunConfig
    with pytest.raises(ValueError, match="needs a float checkpoint"):
        QuantRunConfig(mode="qat")


def test_quantize_script_end_to_end_on_fsdd(tmp_path, fsdd_dir, feature_cache):
    """Train briefly on real FSDD, then PTQ + 1 QAT epoch: accuracies, sizes, exports and agreement recorded."""
    run = tmp_path / "float"
    subprocess.run([sys.executable, str(EXPERIMENTS / "train.py"), "--model", "model_b", "--data-dir", str(fsdd_dir),
                    "--epochs", "2", "--num-steps", "3", "--train-per-class", "30", "--out", str(run),
                    "--cache-dir", str(feature_cache), "--no-progress", "--threads", "2"],
                   check=True, capture_output=True, text=True)
    out = tmp_path / "quant"
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(feature_cache)}
    done = subprocess.run([sys.executable, str(EXPERIMENTS / "quantize.py"), "--checkpoint", str(run / "best.pt"),
                           "--mode", "qat", "--epochs", "1", "--weight-bits", "4", "--data-dir", str(fsdd_dir),
                           "--out", str(out), "--no-progress", "--threads", "2"],
                          check=True, capture_output=True, text=True, env=env)
    assert "quantised test accuracy" in done.stdout
    assert "Output shapes disagree" not in done.stderr, "qonnx's known protobuf dumps are silenced"
    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == 1 and results["kind"] == "quantize"
    assert results["float"]["test_accuracy"] > 0.3 and results["quantized"]["test_accuracy"] > 0.3
    assert 0 <= results["ptq_test_accuracy"] <= 1 and len(results["history"]) == 1
    assert results["integer_reference"] == {"prediction_agreement": 1.0, "spike_count_agreement": 1.0,
                                            "logit_agreement": 1.0, "samples": 300}
    assert results["onnx"]["prediction_agreement"] == 1.0 and results["qonnx"]["prediction_agreement"] == 1.0
    assert results["float"]["size_bytes"] == 4 * 692_678
    assert results["quantized"]["size_bytes"] == (54 + 691_200 + 1_280) // 2 + 4 * (6 + 128 + 10)
    for name in ("quantized.pt", "integer.npz", "integer.json", "integer.vectors.npz", "model.onnx", "model.qonnx.onnx"):
        assert (out / name).stat().st_size > 0, name
    compare = tmp_path / "compare"
    subprocess.run([sys.executable, str(EXPERIMENTS / "compare.py"), str(run), "--quantized", f"{run}={out}",
                    "--max-samples", "20", "--out", str(compare)], check=True, capture_output=True, text=True, env=env)
    row = read_table(compare / "compare.csv", "compare")[0]  # through the schema (scnn.result_tables)
    assert row["quantized_accuracy"] == results["quantized"]["test_accuracy"] and row["accuracy"] > 0.3
    scratch = tmp_path / "scratch"
    subprocess.run([sys.executable, str(EXPERIMENTS / "quantize.py"), "--mode", "scratch", "--model", "model_b",
                    "--num-steps", "2", "--epochs", "2", "--lr", "2e-3", "--train-per-class", "20", "--no-export",
                    "--data-dir", str(fsdd_dir), "--out", str(scratch), "--no-progress", "--threads", "2"],
                   check=True, capture_output=True, text=True, env=env)
    from_scratch = json.loads((scratch / "results.json").read_text())
    assert from_scratch["float"] == {} and len(from_scratch["history"]) == 2
    assert from_scratch["quantized"]["test_accuracy"] > 0.2  # two epochs on 200 recordings; chance is 0.1
    bad = subprocess.run([sys.executable, str(EXPERIMENTS / "quantize.py"), "--checkpoint", str(run / "best.pt"),
                          "--weight-bits", "1", "--out", str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--weight-bits: must be from 2 to 8, got 1" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr  # checked where parsed: one line, no traceback


def test_qat_from_scratch_reads_its_data_config_as_train_does(tmp_path):
    """--mode scratch takes the data options (and a config's data section, and data.* overrides) as scnn train does:
    here class folders with a random split, not FSDD. results.json records the run config of the scratch run."""
    from scnn.cli import main as scnn
    from scnn.data.fixtures import write_tone
    from scnn.train import RunConfig

    for label, frequency in (("low", 300.0), ("mid", 700.0), ("high", 1500.0)):
        for take in range(10):
            write_tone(tmp_path / "wav" / label / f"{take}.wav", frequency * (1 + 0.02 * take), seed=take, seconds=0.4)
    out = tmp_path / "scratch"
    results = scnn(["quantize", "--mode", "scratch", "--model", "4C3-16FC-3FC", "--num-steps", "2", "--epochs", "1",
                    "--batch-size", "8", "--calibration-samples", "8", "--no-export", "--threads", "1", "--no-progress",
                    "--dataset", "folders", "--data-dir", str(tmp_path / "wav"), "--split", "random",
                    "data.test_fraction=0.3", f"data.cache_dir={tmp_path / 'cache'}", "--out", str(out)])
    assert results["float"] == {} and len(results["history"]) == 1
    on_disk = json.loads((out / "results.json").read_text())
    assert sum(map(sum, on_disk["quantized"]["confusion_matrix"])) == 9, "30 recordings, 30 % tested"
    assert sorted(on_disk["quantized"]["per_class_accuracy"]) == ["high", "low", "mid"]
    assert on_disk["config"]["data"] == {"dataset": "folders", "data_dir": str(tmp_path / "wav"), "split": "random",
                                         "test_fraction": 0.3, "cache_dir": str(tmp_path / "cache")}
    run = RunConfig.from_dict(on_disk["run_config"])
    assert (run.data.dataset, run.data.split, run.data.test_fraction) == ("folders", "random", 0.3)
    assert run.model == {"name": "4C3-16FC-3FC", "num_steps": 2}
    assert (run.train.epochs, run.train.batch_size, run.train.lr) == (1, 8, 5e-4), "the QAT's own settings"
