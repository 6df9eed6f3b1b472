"""Quantised RLeaky, Synaptic and ALIF neurons and the quantised streaming presets: each equals its integer
reference bit for bit (logits, every layer's membranes and spike counts), the integer reference streams (one
step at a time == the offline pass), the states update and saturate as docs/integer_format.md says, and
unsupported layers fail naming the layer."""

import json
import warnings

import numpy as np
import pytest
import torch

from scnn.models import create_model
from scnn.quant import QuantConfig, quantize, quantized_from_dict, quantized_to_dict
from scnn.quant.integer import (FORMAT, IntegerStreamer, check_test_vectors, export_integer, integer_widths,
                                load_integer, make_test_vectors, quantize_input, run_integer, save_integer)
from scnn.quant.twin import QuantALIF, QuantLIF, QuantRLeaky, QuantSynaptic, quant_neuron
from tests.test_integer_format import toy_artefact

warnings.filterwarnings("ignore", module="brevitas")

NEURON_VARIANTS = [
    ("rleaky", {}, {}),  # all-to-all (a Linear on dense layers, a padded Conv2d on conv maps)
    ("rleaky", {"neuron_options": {"all_to_all": False, "V": 0.7}}, {"weight_bits": 4}),  # one-to-one
    ("rleaky", {"reset_mechanism": "zero", "per_channel_beta": True}, {"per_channel": True}),
    ("synaptic", {"neuron_options": {"alpha": 0.8}}, {"per_channel": True}),
    ("synaptic", {"reset_mechanism": "zero", "per_channel_beta": True}, {"leak": "fixed", "state_bits": 10}),
    ("alif", {"neuron_options": {"rho": 0.9, "adaptation": 0.5}}, {}),
    ("alif", {"reset_mechanism": "zero", "per_channel_beta": True}, {"leak": "fixed", "leak_bits": 6}),
]
QUANT_TYPES = {"rleaky": QuantRLeaky, "synaptic": QuantSynaptic, "alif": QuantALIF}


def louder(model, factor=3.0):
    """Scale every weight so that random inputs make every layer spike (else the comparison is vacuous)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and parameter.dim() > 1:
                parameter.mul_(factor)
    return model.eval()


def assert_bit_exact(quantized, x):
    """Twin vs integer reference: logits exactly, every neuron layer's membranes [T, B, ...] exactly (in real
    units), spike counts per sample and layer; returns the integer result."""
    captured = []
    hooks = [neuron.register_forward_hook(lambda module, args, output: captured.append(output))
             for neuron in quantized.quant_lif_layers()]
    try:
        with torch.no_grad():
            output = quantized(x, record=True)
    finally:
        for hook in hooks:
            hook.remove()
    description, arrays = export_integer(quantized)
    result = run_integer(description, arrays, quantize_input(description, x.numpy()), record_membranes=True)
    np.testing.assert_array_equal(result.real_logits, output.logits.double().numpy())
    np.testing.assert_array_equal(result.predictions, output.logits.argmax(1).numpy())
    neurons = [entry["activation"] for entry in description["layers"]]
    for layer, ((spikes, membranes), integer_membranes, counts, activation) in enumerate(
            zip(captured, result.membranes, result.spike_counts, neurons)):
        np.testing.assert_array_equal(integer_membranes * 2.0 ** activation["state_exponent"],
                                      membranes.double().numpy(), err_msg=f"layer {layer} membranes")
        np.testing.assert_array_equal(spikes.reshape(spikes.shape[0], spikes.shape[1], -1).sum((0, 2)).numpy(),
                                      counts, err_msg=f"layer {layer} spike counts")
        assert counts.sum() > 0, f"layer {layer} never spikes: the comparison would be vacuous"
    return description, arrays, result


def assert_streams(description, arrays, codes, result):
    """IntegerStreamer, one step at a time, equals the offline pass: per-step readout, logits, spike counts."""
    streamer = IntegerStreamer(description, arrays)
    sequence = description["input_kind"] == "sequence"
    readouts = [streamer.step(codes[..., t] if sequence else codes) for t in range(description["num_steps"])]
    np.testing.assert_array_equal(np.stack(readouts), result.membranes[-1])
    np.testing.assert_array_equal(streamer.logits, result.logits)
    for mine, theirs in zip(streamer.spike_counts, result.spike_counts):
        np.testing.assert_array_equal(mine, theirs)
    streamer.reset()  # a new sample starts from the zero state
    first = streamer.step(codes[..., 0] if sequence else codes)
    np.testing.assert_array_equal(first, result.membranes[-1][0])


@pytest.mark.parametrize("neuron,overrides,quant_options", NEURON_VARIANTS)
def test_each_neuron_quantised_equals_its_integer_reference(neuron, overrides, quant_options):
    torch.manual_seed(0)
    model = louder(create_model("4C3-24FC-10FC", neuron=neuron, num_steps=6, input_shape=(1, 10, 10), beta=0.8,
                                **overrides))
    x = torch.randn(12, 1, 10, 10) * 1.5
    quantized = quantize(model, calibration_data=x, **quant_options)
    assert all(type(q) is QUANT_TYPES[neuron] for q in quantized.quant_lif_layers())
    description, arrays, result = assert_bit_exact(quantized, x)
    assert {entry["activation"]["type"] for entry in description["layers"]} == \
        {{"rleaky": "rlif", "synaptic": "synaptic", "alif": "alif"}[neuron]}
    assert_streams(description, arrays, quantize_input(description, x.numpy()), result)


@pytest.mark.parametrize("name", ["streaming", "streaming_rleaky"])
def test_streaming_presets_quantised_equal_the_integer_reference_and_stream(name, tmp_path):
    torch.manual_seed(1)
    model = louder(create_model(name, input_shape=(1, 12, 16), channels=4, hidden=(24, 16)), 2.0)
    x = torch.randn(10, 1, 12, 16) * 1.5
    quantized = quantize(model, calibration_data=x)
    description, arrays, result = assert_bit_exact(quantized, x)
    assert description["format"] == FORMAT == "scnn-integer-v3"
    assert description["input_kind"] == "sequence" and description["num_steps"] == 16
    assert description["layers"][0]["kernel"] == [5, 1] and description["layers"][0]["padding"] == [2, 0]
    codes = quantize_input(description, x.numpy())
    assert_streams(description, arrays, codes, result)
    # causal: changing a later frame changes no earlier step's readout
    changed = codes.copy()
    changed[..., 10:] = 0
    streamer = IntegerStreamer(description, arrays)
    early = [streamer.step(changed[..., t]) for t in range(10)]
    np.testing.assert_array_equal(np.stack(early), result.membranes[-1][:10])
    # the artefact round-trips with its test vectors (per-frame readout included)
    vectors = make_test_vectors(description, arrays, codes[:4])
    save_integer(description, arrays, tmp_path / "integer", vectors=vectors)
    loaded, loaded_arrays = load_integer(tmp_path / "integer")
    assert vectors["frame_logits"].shape == (16, 4, 10)
    assert check_test_vectors(loaded, loaded_arrays, vectors) == 4
    assert loaded["widths"] == integer_widths(description, arrays)
    assert np.abs(result.logits).max() <= loaded["widths"][-1]["logits_max"]
    # the quantised checkpoint's description rebuilds the same model (neuron buffers included)
    rebuilt = quantized_from_dict(quantized_to_dict(quantized), quantized.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logits, quantized(x).logits)


def fsdd_features(fsdd_dir, count=8):
    """Causal MFCCs [count, 1, 20, 64] of the first recordings of each digit, normalised per row over themselves."""
    from scnn.features.mfcc import feature_config, file_to_mfcc

    paths = [sorted(fsdd_dir.glob(f"{digit}_*.wav"))[0] for digit in range(count)]
    features = np.stack([file_to_mfcc(path, feature_config("causal")) for path in paths]).astype(np.float32)
    mean, std = features.mean((0, 2), keepdims=True), features.std((0, 2), keepdims=True) + 1e-6
    return torch.from_numpy((features - mean) / std).unsqueeze(1)


@pytest.mark.parametrize("name,overrides", [("streaming", {}), ("streaming", {"neuron": "synaptic"}),
                                            ("streaming_rleaky", {"neuron_options": {"all_to_all": False}})])
def test_fsdd_recordings_bit_exact_and_streamed(fsdd_dir, name, overrides):
    """Real recordings (causal MFCC frames of 16 ms) through randomly initialised streaming nets: the FSDD input
    statistics (long silences, loud onsets) exercise saturation and quiet neurons that random noise does not."""
    x = fsdd_features(fsdd_dir)
    torch.manual_seed(2)
    model = louder(create_model(name, input_shape=(1, 20, 64), channels=4, hidden=(32,), **overrides), 2.0)
    quantized = quantize(model, calibration_data=x)
    description, arrays, result = assert_bit_exact(quantized, x)
    assert_streams(description, arrays, quantize_input(description, x.numpy()), result)


# --------------------------------------------------------------------------- the documented update order


def toy_neuron(kind, threshold, **options):
    """A one-layer toy of ``kind`` on a 4-bit state (-8..7), unit 1: (twin neuron, integer description, arrays)."""
    from scnn.neurons.base import create_neuron

    neuron = create_neuron(kind, beta=0.5, threshold=threshold, **options)
    quantized = quant_neuron(neuron, QuantConfig(state_bits=4), "toy layer")
    quantized.set_state_exponent(0)
    return quantized


def twin_trace(quantized, currents, state_name="membrane"):
    """Drive the twin neuron with integer currents [T] (one neuron); the trace of one state and the spikes."""
    state = quantized.initial_state(torch.zeros(1, 1))
    values, spikes = [], []
    with torch.no_grad():
        for current in currents:
            state = quantized.advance(torch.tensor([[float(current)]]), state)
            values.append(int(state[state_name]))
            spikes.append(int(state["spike"]))
    return values, spikes


def integer_toy(kind, extra_arrays, reset="subtract", threshold=4, steps=4, **activation):
    description, arrays = toy_artefact(threshold=threshold, reset=reset, steps=steps)
    description["layers"][0]["activation"].update(type=kind, **activation)
    arrays.update(extra_arrays)
    return description, arrays


def test_synaptic_update_order_and_saturation():
    """alpha = beta = 1/2 (k = 1), threshold 4, input 5, 4-bit state (max 7). t0: Syn = 5, U = 5 > 4 spikes.
    t1: Syn = 5 - 2 + 5 = 8 saturates to 7 (before it reaches U); U = leak(5) + 7 - 4 = 3 + 3 = 6.
    t2: Syn = 7 - 3 + 5 = 9 -> 7; U = leak(6) + 7 - 4 = 6. Zero reset: U = 0 the step after a spike, Syn kept."""
    quantized = toy_neuron("synaptic", 4.0, alpha=0.5)
    assert twin_trace(quantized, [5, 5, 5]) == ([5, 6, 6], [1, 1, 1])
    assert twin_trace(quantized, [5, 5, 5], "synaptic")[0] == [5, 7, 7]
    description, arrays = integer_toy("synaptic", {"layer0.alpha_shift": np.array([1]),
                                                   "layer0.alpha_multiplier": np.array([128])}, steps=3)
    result = run_integer(description, arrays, np.array([5, 0], np.int8).reshape(1, 2, 1, 1), record_membranes=True)
    assert result.membranes[0][:, 0, 0].tolist() == [5, 6, 6]
    zero = toy_neuron("synaptic", 4.0, alpha=0.5, reset_mechanism="zero")
    assert twin_trace(zero, [5, 5, 5]) == ([5, 0, 7], [1, 0, 1])  # t2: Syn = 7, U = leak(0) + 7
    description, arrays = integer_toy("synaptic", {"layer0.alpha_shift": np.array([1]),
                                                   "layer0.alpha_multiplier": np.array([128])}, reset="zero", steps=3)
    result = run_integer(description, arrays, np.array([5, 0], np.int8).reshape(1, 2, 1, 1), record_membranes=True)
    assert result.membranes[0][:, 0, 0].tolist() == [5, 0, 7]


def test_alif_adaptation_raises_the_threshold_as_documented():
    """beta = rho = 1/2, threshold 2, b = 4: jump = round(4 * (1 - 1/2)) = 2. Input 3.
    t0: Theta 0, B 2, U 3 spikes. t1: Theta = 0 + 2, B = 4, U = leak(3) + 3 - 4 = 1: no spike.
    t2: Theta = 2 - 1 = 1, B = 3, U = leak(1) + 3 = 4 > 3 spikes. t3: Theta = 1 - 0 + 2 = 3, B = 5,
    U = leak(4) + 3 - 5 = 0. A 4-bit Theta saturates at 7."""
    quantized = toy_neuron("alif", 2.0, rho=0.5, adaptation=4.0)
    assert int(quantized.jump_int) == 2
    assert twin_trace(quantized, [3, 3, 3, 3]) == ([3, 1, 4, 0], [1, 0, 1, 0])
    assert twin_trace(quantized, [3, 3, 3, 3], "adaptation")[0] == [0, 2, 1, 3]
    extra = {"layer0.rho_shift": np.array([1]), "layer0.rho_multiplier": np.array([128]), "layer0.jump": np.array([2])}
    description, arrays = integer_toy("alif", extra, threshold=2)
    result = run_integer(description, arrays, np.array([3, 0], np.int8).reshape(1, 2, 1, 1), record_membranes=True)
    assert result.membranes[0][:, 0, 0].tolist() == [3, 1, 4, 0] and result.spike_counts[0].tolist() == [2]
    strong = toy_neuron("alif", 1.0, rho=1.0, adaptation=1.0)  # rho_q = 1 - 2**-15: Theta barely leaks
    strong.jump_int.fill_(5)
    theta, _ = twin_trace(strong, [7] * 8, "adaptation")
    assert max(theta) == 7 and theta[-1] == 7  # saturated at state_max, never above
    extra = {"layer0.rho_shift": np.array([15]), "layer0.rho_multiplier": np.array([256]), "layer0.jump": np.array([5])}
    description, arrays = integer_toy("alif", extra, threshold=1, steps=8)
    streamer = IntegerStreamer(description, arrays)
    integer_theta = []
    for _ in range(8):
        streamer.step(np.array([7, 0], np.int8).reshape(1, 2, 1, 1))
        integer_theta.append(int(streamer.states[0]["adaptation"][0, 0]))
    assert integer_theta == theta


def test_rleaky_recurrent_current_and_resets():
    """One-to-one V = 2: e_V = ceil(log2(2 / 127)) = -5, V_int = 64, R = S[t-1] * round(64 / 32) = 2.
    beta 1/2, threshold 4, input 3: t0 U = 3; t1 U = leak(3) + 3 = 5 spikes; t2 U = leak(5) + 3 + 2 - 4 = 4, no
    spike (strict); t3 U = leak(4) + 3 = 5. Zero reset (snntorch's RLeaky): U = 0 the step after a spike."""
    quantized = toy_neuron("rleaky", 4.0, all_to_all=False, V=2.0)
    integer, exponent = quantized.quant_v()
    assert int(integer) == 64 and int(exponent) == -5
    assert twin_trace(quantized, [3, 3, 3, 3]) == ([3, 5, 4, 5], [0, 1, 0, 1])
    zero = toy_neuron("rleaky", 4.0, all_to_all=False, V=2.0, reset_mechanism="zero")
    assert twin_trace(zero, [3, 3, 3, 3]) == ([3, 5, 0, 3], [0, 1, 0, 0])
    extra = {"layer0.recurrent.v": np.array([64], np.int8), "layer0.recurrent.acc_exponent": np.array([-5])}
    for reset, expected in (("subtract", [3, 5, 4, 5]), ("zero", [3, 5, 0, 3])):
        description, arrays = integer_toy("rlif", extra, reset=reset,
                                          recurrent={"type": "one_to_one", "weight_bits": 8})
        result = run_integer(description, arrays, np.array([3, 0], np.int8).reshape(1, 2, 1, 1),
                             record_membranes=True)
        assert result.membranes[0][:, 0, 0].tolist() == expected, reset


def test_twin_states_saturate_at_the_documented_limits():
    """A 4-bit state driven hard: membranes and synaptic currents stay in [-8, 7] and reach both ends; the integer
    reference saturates identically (bit-exact logits and membranes)."""
    torch.manual_seed(3)
    for neuron in ("synaptic", "rleaky", "alif"):
        model = louder(create_model("16FC-10FC", neuron=neuron, num_steps=6, input_shape=(1, 4, 4), beta=0.9), 6.0)
        x = torch.randn(16, 1, 4, 4) * 3
        quantized = quantize(model, state_bits=4, calibration_data=x[:2] * 0.05)  # a grid too fine: it saturates
        captured = []
        hook = quantized.quant_lif_layers()[0].register_forward_hook(lambda m, a, out: captured.append(out[1]))
        with torch.no_grad():
            quantized(x)
        hook.remove()
        units = captured[0] / 2.0 ** quantized.quant_lif_layers()[0].state_exponent
        assert int(units.min()) == -8 and int(units.max()) == 7, neuron
        assert_bit_exact(quantized, x)


# --------------------------------------------------------------------------- QAT, versions and errors


def test_streaming_qat_fine_tunes_through_the_one_fit_loop():
    from scnn.quant.workflow import fine_tune
    from scnn.train import TrainConfig
    from tests.test_training import synthetic_data

    data = synthetic_data(per_class=8)
    torch.manual_seed(0)
    model = create_model("streaming", input_shape=(1, 32, 32), num_classes=4, channels=4, hidden=(16,))
    quantized = quantize(model, weight_bits=6, calibration_data=data.train[0])
    before = quantized.blocks[1].synapse.weight.detach().clone()
    history = fine_tune(quantized, data, TrainConfig(model="streaming", epochs=2, lr=3e-3, batch_size=16, seed=0),
                        progress=False)
    assert len(history) == 2 and all(np.isfinite(h["train_loss"]) for h in history)
    assert not torch.equal(before, quantized.blocks[1].synapse.weight)  # gradients reached the weights
    assert_bit_exact(quantized, data.test[0])  # still bit-exact after training


def test_old_artefacts_still_run_and_unknown_ones_fail_clearly(tmp_path):
    description, arrays = toy_artefact()
    codes = np.array([5, 3], np.int8).reshape(1, 2, 1, 1)
    expected = run_integer(description, arrays, codes).logits
    for old in ("scnn-integer-v1", "scnn-integer-v2"):  # no input_kind, "lif" only: the same model
        save_integer({**description, "format": old}, arrays, tmp_path / old)
        loaded, loaded_arrays = load_integer(tmp_path / old)
        np.testing.assert_array_equal(run_integer(loaded, loaded_arrays, codes).logits, expected)
    save_integer({**description, "format": "scnn-integer-v9"}, arrays, tmp_path / "future")
    with pytest.raises(ValueError, match="format 'scnn-integer-v9'"):
        load_integer(tmp_path / "future")
    strange = json.loads(json.dumps(description))
    strange["layers"][0]["activation"]["type"] = "izhikevich"
    with pytest.raises(ValueError, match="layer 0: unknown activation 'izhikevich'"):
        run_integer(strange, arrays, codes)
    with pytest.raises(ValueError, match=r"expected input codes \[B, 2, 1, 1\]"):
        IntegerStreamer(description, arrays).step(np.zeros((1, 3, 1, 1), np.int8))


def test_unsupported_layers_fail_naming_the_layer():
    from torch import nn

    from scnn.neurons.base import SpikingNeuron

    class Mystery(SpikingNeuron):
        spike_function = staticmethod(torch.sign)

        def forward(self, current, return_membrane=True, overwrite_current=False):
            return current, current

    model = create_model("8FC-4FC", input_shape=(1, 4, 4), num_steps=2)
    model.blocks[1].activation = Mystery()
    with pytest.raises(ValueError, match="layer 1: cannot quantise neuron Mystery"):
        quantize(model)
    model = create_model("2C3-4FC", input_shape=(1, 6, 6), num_steps=2)
    model.blocks[0].synapse = nn.Conv2d(1, 2, 3, stride=2)
    with pytest.raises(ValueError, match="layer 0: quantisation supports stride-1"):
        quantize(model)
    with pytest.raises(ValueError, match="direct encoding"):
        quantize(create_model("8FC-4FC", input_shape=(1, 4, 4), encoding="rate"))
    with pytest.raises(ValueError, match="streaming model"):
        quantize(create_model("ssm_tiny"))
    assert isinstance(quantize(create_model("8FC-4FC", input_shape=(1, 4, 4))).quant_lif_layers()[0], QuantLIF)
