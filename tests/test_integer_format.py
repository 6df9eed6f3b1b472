"""The integer artefact as a specification (docs/integer_format.md): the arithmetic it names, hand-checked on a
toy net; front end, normaliser, widths and test vectors in every export, checked against the numpy reference."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from scnn.quant.integer import (ARITHMETIC, FORMAT, check_test_vectors, export_integer, integer_widths,
                                load_integer, load_test_vectors, make_test_vectors, normalize_features,
                                quantize_input, run_integer, save_integer)

warnings.filterwarnings("ignore", module="brevitas")
DOC = Path(__file__).resolve().parents[1] / "docs" / "integer_format.md"


def toy_artefact(leak="shift", reset="subtract", leak_shift=1, multiplier=128, threshold=4, steps=4):
    """One fc layer (2 inputs -> 2 LIF neurons), weights 1 and -1, state 4 bits (-8..7), every exponent 0."""
    description = {"format": FORMAT, "spiking": True, "num_steps": steps, "readout": "membrane",
                   "input_shape": [2, 1, 1], "input": {"exponent": 0, "bits": 8, "signed": True},
                   "layers": [{"type": "fc", "flatten": True, "pool": 0, "weight_bits": 8, "activation": {
                       "type": "lif", "bits": 4, "state_exponent": 0, "state_min": -8, "state_max": 7,
                       "leak": leak, "leak_bits": 8, "reset": reset}}]}
    arrays = {"layer0.weight": np.array([[1, 0], [0, -1]], np.int8), "layer0.bias": np.zeros(2, np.int32),
              "layer0.acc_exponent": np.zeros(2, np.int64), "layer0.threshold": np.array([threshold]),
              "layer0.leak_shift": np.array([leak_shift]), "layer0.leak_multiplier": np.array([multiplier])}
    return description, arrays


def membranes(description, arrays, codes):
    result = run_integer(description, arrays, np.array(codes, np.int8).reshape(1, 2, 1, 1), record_membranes=True)
    return result.membranes[0][:, 0].tolist(), result


def test_lif_update_order_as_specified():
    """Input 5 each step, threshold 4, leak k=1 (beta 1/2), subtract reset, 4-bit state (max 7).
    t0: U = 0 + 5 = 5 > 4 spikes. t1: leak(5) = 5 - 2 = 3, + 5 = 8, reset subtracts 4 AFTER the leak (not
    leaked): 4, saturation once at the end (8 - 4 = 4 <= 7; saturating 8 to 7 first would give 3), 4 > 4 is
    false (strict). t2: leak(4) = 2, + 5 = 7, no spike to subtract: 7, spikes. t3: leak(7) = 4, + 5 - 4 = 5."""
    description, arrays = toy_artefact()
    (trace, result) = membranes(description, arrays, [5, 3])
    assert [u[0] for u in trace] == [5, 4, 7, 5]
    # neuron 1 sees -3: 0 - 3 = -3; leak(-3) = -3 - floor(-3/2) = -1, -1 - 3 = -4; leak(-4) = -2 -> -5;
    # leak(-5) = -5 - (-3) = -2 -> -5 (floor shift on negatives, never a spike)
    assert [u[1] for u in trace] == [-3, -4, -5, -5]
    assert result.logits.tolist() == [[21, -17]] and result.spike_counts[0].tolist() == [3]  # t0, t2, t3


def test_fixed_leak_floors_negative_membranes_and_zero_reset_forgets():
    """leak='fixed', multiplier 128 / 2**8 = 1/2: floor(-3/2) = -2 (the shift leak gives -1: not the same)."""
    description, arrays = toy_artefact(leak="fixed")
    trace, _ = membranes(description, arrays, [0, 3])
    assert [u[1] for u in trace] == [-3, -5, -6, -6]  # floor(-1.5)-3, floor(-2.5)-3, floor(-3)-3
    description, arrays = toy_artefact(reset="zero", leak_shift=15)  # beta ~1: U keeps growing until it spikes
    trace, _ = membranes(description, arrays, [3, 0])
    assert [u[0] for u in trace] == [3, 6, 3, 6]  # 6 > 4 spikes, then the membrane restarts from 0 (+3)


def test_saturation_and_requantisation_round_half_to_even():
    description, arrays = toy_artefact(threshold=6)
    arrays["layer0.acc_exponent"] = np.array([-1, -1])  # current = round_half_even(acc / 2)
    trace, _ = membranes(description, arrays, [5, 3])  # 5/2 = 2.5 -> 2 (even); -3/2 = -1.5 -> -2 (even)
    assert [u[0] for u in trace][:2] == [2, 3] and trace[0][1] == -2
    trace, _ = membranes(description, arrays, [127, 127])  # 63.5 -> 64: saturates at 7 and -8
    assert trace[0] == [7, -8]


def test_the_spec_names_every_rule_the_artefact_carries():
    text = DOC.read_text()
    for phrase in ("ties to the EVEN result", "NOT leaked", "saturation ONCE", "strict", "C, H, W order",
                   "`padding` 0", "`stride` 1", "input.norm_mean", "acc_max", "trace.layerI", "floor(-1.5) = -2"):
        assert phrase in text, phrase
    assert set(ARITHMETIC) >= {"requantisation", "lif_update", "leak", "flatten_order", "convolution",
                               "input_quantiser", "readout"}


@pytest.fixture(scope="module")
def fsdd_artefact(tiny_snn_run, tiny_fsdd):
    """The tiny one-epoch Model B (T = 4) on FSDD, post-training quantised, exported with front end and normaliser."""
    from scnn.quant import quantize
    from scnn.train.evaluate import load_trained_model

    torch.set_num_threads(1)
    _, data = tiny_fsdd
    model, _ = load_trained_model(tiny_snn_run / "best.pt")
    quantized = quantize(model, calibration_data=data.train[0][:64])
    description, arrays = export_integer(quantized, data.feature_config, data.normalizer)
    return quantized, description, arrays, data


def test_fsdd_export_carries_front_end_normaliser_widths_and_vectors(fsdd_artefact, tmp_path):
    quantized, description, arrays, data = fsdd_artefact
    codes = quantize_input(description, data.test[0][:16].numpy())
    vectors = make_test_vectors(description, arrays, codes)
    save_integer(description, arrays, tmp_path / "integer", vectors=vectors)
    saved = json.loads((tmp_path / "integer.json").read_text())
    assert saved["front_end"]["n_mfcc"] == data.feature_config.n_mfcc and saved["normalizer"]["enabled"]
    assert saved["test_vectors"] == {"file": "integer.vectors.npz", "samples": 16}
    loaded, loaded_arrays = load_integer(tmp_path / "integer")
    raw = np.random.default_rng(0).normal(size=(3, *data.test[0].shape[2:])).astype(np.float32) * 50
    np.testing.assert_array_equal(normalize_features(loaded, loaded_arrays, raw)[:, 0], data.normalizer(raw))
    assert check_test_vectors(loaded, loaded_arrays, load_test_vectors(tmp_path / "integer")) == 16
    with torch.no_grad():  # the vectors are the Brevitas model's numbers too
        output = quantized(data.test[0][:16], record=True)
    np.testing.assert_array_equal(vectors["logits"] * 2.0 ** int(vectors["logit_exponent"]),
                                  output.logits.double().numpy())
    counts = np.stack([s.reshape(s.shape[0], s.shape[1], -1).sum((0, 2)).numpy() for s in output.layer_spikes], 1)
    np.testing.assert_array_equal(vectors["spike_counts"], counts)
    assert (vectors["spike_counts"][:, :2].sum(0) > 0).all(), "hidden layers spike: the comparison is not vacuous"
    assert len(np.unique(vectors["logits"])) > 10  # the (membrane) readout varies
    assert vectors["trace.layer0"].shape == (4, 2, 8)
    # the widths bound what the vectors reach
    recorded = run_integer(description, arrays, codes, record_membranes=True)
    assert all(np.abs(m).max() <= 2 ** (w["state_bits"] - 1) for m, w in zip(recorded.membranes, saved["widths"]))
    assert saved["widths"] == integer_widths(description, arrays) and saved["widths"][0]["acc_bits"] <= 32
    assert np.abs(vectors["logits"]).max() <= saved["widths"][-1]["logits_max"]


def test_tampered_vectors_are_named(fsdd_artefact):
    _, description, arrays, data = fsdd_artefact
    vectors = make_test_vectors(description, arrays, quantize_input(description, data.test[0][:4].numpy()))
    vectors["logits"] = vectors["logits"].copy()
    vectors["logits"][1, 3] += 1
    vectors["trace.layer1"] = vectors["trace.layer1"] + 1
    with pytest.raises(ValueError, match="disagree with the integer reference in: logits, trace.layer1"):
        check_test_vectors(description, arrays, vectors)
    with pytest.raises(ValueError, match="int8 input codes"):
        make_test_vectors(description, arrays, data.test[0][:2].numpy())


def test_missing_vectors_and_old_artefacts(tmp_path):
    description, arrays = toy_artefact()
    save_integer({**description, "format": "scnn-integer-v1"}, arrays, tmp_path / "old")
    loaded, _ = load_integer(tmp_path / "old")  # version 1 still reads
    assert loaded["format"] == "scnn-integer-v1"
    with pytest.raises(FileNotFoundError, match="old.vectors.npz: no test vectors"):
        load_test_vectors(tmp_path / "old")
    with pytest.raises(ValueError, match="no normaliser"):
        normalize_features(description, arrays, np.zeros((1, 2, 1)))


def test_the_registered_integer_export_writes_front_end_and_vectors(fsdd_artefact, tmp_path):
    """scnn quantize's "integer" export (scnn.quant.exports): the front end and normaliser the workflow hands it,
    and test vectors of the first test recordings that the reference reproduces."""
    from scnn.quant.exports import run_exports

    quantized, _, _, data = fsdd_artefact
    quantized.front_end = (data.feature_config, data.normalizer)
    entry = run_exports(["integer"], quantized, data.test[0][:40], tmp_path)["integer"]
    assert entry["prediction_agreement"] == 1.0 and entry["spike_count_agreement"] == 1.0
    description, arrays = load_integer(tmp_path / "integer")
    assert description["front_end"]["num_frames"] == data.feature_config.num_frames
    assert description["test_vectors"] == {"file": "integer.vectors.npz", "samples": 16}
    assert check_test_vectors(description, arrays, load_test_vectors(tmp_path / "integer")) == 16
