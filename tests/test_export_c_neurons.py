"""C99 integer inference of the streaming presets and the neurons beyond Leaky (scnn export-c): frame-by-frame input,
padded rectangular convolutions, ALIF, RLeaky (all-to-all and one-to-one) and Synaptic neurons. Built with gcc
-Wall -Wextra -Werror -std=c99 and checked bit-exact against the numpy integer reference: logits, per-frame logits
(the streaming step's readout), per-layer spike counts and membrane traces, on FSDD recordings (causal features) and
on test vectors; the streaming preset cross-compiled for a Cortex-M4 and run under qemu."""

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch

from scnn.quant.export_c import build_cortex_m4, build_host, export_c, parse_harness_output, run_qemu
from scnn.quant.integer import export_integer, make_test_vectors, quantize_input, run_integer, save_integer

warnings.filterwarnings("ignore", module="brevitas")


def needs_gcc():
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found: the C export is compiled with gcc")


@pytest.fixture(scope="module")
def causal_features(fsdd_dir):
    """Causal MFCCs [12, 1, 20, 64] of 12 FSDD recordings (one speaker each of digits 0-5, two each), standardised
    per coefficient over them (the streaming presets' front end; the normaliser only has to give codes a range)."""
    import soundfile

    from scnn.features.mfcc import feature_config, waveform_to_mfcc

    config = feature_config("causal")
    paths = [path for digit in range(6) for path in sorted(fsdd_dir.glob(f"{digit}_*.wav"))[:2]]
    features = np.stack([waveform_to_mfcc(soundfile.read(path, dtype="float32")[0], config) for path in paths])
    features = (features - features.mean((0, 2), keepdims=True)) / features.std((0, 2), keepdims=True)
    return torch.from_numpy(features[:, None].astype(np.float32))


def _quantised(preset: str, x: torch.Tensor, quant_options: dict | None = None, **overrides):
    """A random-weight quantised streaming model whose every layer spikes on x (stronger deeper synapses)."""
    from scnn.models import create_model
    from scnn.quant import quantize

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = create_model(preset, input_shape=tuple(x.shape[1:]), **overrides).eval()
    with torch.no_grad():
        for block in model.blocks[1:]:
            for parameter in block.synapse.parameters():
                parameter.mul_(3)
    return export_integer(quantize(model, calibration_data=x, **(quant_options or {})))


def _check(description, arrays, codes, folder, vectors=4):
    """Export with test vectors, build, run the harness on the vectors and on every code sample; assert bit-exact.
    Returns (C output of the harness, the reference)."""
    save_integer(description, arrays, folder / "integer",
                 vectors=make_test_vectors(description, arrays, codes[:vectors]))
    exported = export_c(folder / "integer", folder / "c")
    codes.tofile(folder / "codes.bin")
    done = subprocess.run([str(build_host(folder / "c")), str(folder / "codes.bin")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    # vectors: logits, predictions, spike counts, membrane traces and every frame's readout
    assert f"vectors {vectors} mismatches 0" in done.stdout and "frame logits checked" in done.stdout
    assert f"state bytes {exported['state_bytes']}" in done.stdout
    expected = run_integer(description, arrays, codes)
    rows = parse_harness_output(done.stdout)
    assert len(rows) == len(codes)
    np.testing.assert_array_equal([r[1] for r in rows], expected.logits)
    np.testing.assert_array_equal([r[0] for r in rows], expected.predictions)
    np.testing.assert_array_equal([r[2] for r in rows], np.stack(expected.spike_counts, 1))
    assert np.stack(expected.spike_counts, 1).sum(0).min() > 0, "every layer spikes somewhere"
    return done.stdout, expected


# (preset, model overrides, quantiser options): each hidden neuron of the toolkit, both resets, both leaks
NEURON_VARIANTS = {
    "alif": ("streaming", {}, {}),
    "alif_zero_reset_fixed_leak": ("streaming", {"reset_mechanism": "zero"}, {"leak": "fixed"}),
    "rlif_all_to_all": ("streaming_rleaky", {}, {}),
    "rlif_zero_reset": ("streaming_rleaky", {"reset_mechanism": "zero"}, {}),
    "rlif_one_to_one": ("streaming_rleaky", {"neuron_options": {"all_to_all": False}}, {}),
    "synaptic": ("streaming", {"neuron": "synaptic"}, {}),
    "synaptic_zero_reset_fixed_leak": ("streaming", {"neuron": "synaptic", "reset_mechanism": "zero"},
                                       {"leak": "fixed"}),
}


@pytest.mark.parametrize("variant", sorted(NEURON_VARIANTS))
def test_c_neurons_are_bit_exact_on_fsdd_recordings(variant, causal_features, tmp_path):
    needs_gcc()
    preset, overrides, quant_options = NEURON_VARIANTS[variant]
    description, arrays = _quantised(preset, causal_features, quant_options, channels=4, hidden=(32, 24), **overrides)
    kinds = [entry["activation"]["type"] for entry in description["layers"]]
    assert kinds[1] == kinds[2] == variant.split("_")[0] and description["input_kind"] == "sequence"
    assert description["layers"][0]["kernel"] == [5, 1] and description["layers"][0]["padding"] == [2, 0]
    codes = quantize_input(description, causal_features.numpy())
    _check(description, arrays, codes, tmp_path)


def test_c_streaming_step_returns_each_frames_readout(causal_features, tmp_path):
    """The streaming API frame by frame (scnn_reset, scnn_step_frame) from a caller's program: every frame's
    readout equals the reference's per-frame logits, and their sum the logits."""
    needs_gcc()
    description, arrays = _quantised("streaming", causal_features, channels=4, hidden=(32, 24))
    codes = quantize_input(description, causal_features[:3].numpy())
    save_integer(description, arrays, tmp_path / "integer")
    export_c(tmp_path / "integer", tmp_path / "c")
    c_dir = tmp_path / "c"
    main = tmp_path / "frames.c"
    main.write_text("""#include <stdio.h>
#include "scnn_model.h"
int main(void) {
    static int8_t codes[SCNN_INPUT_SIZE]; int8_t frame[SCNN_FRAME_SIZE]; static scnn_state_t state; int t, r, c;
    while (fread(codes, 1, SCNN_INPUT_SIZE, stdin) == SCNN_INPUT_SIZE) {
        scnn_reset(&state);
        for (t = 0; t < SCNN_NUM_STEPS; ++t) {
            const int32_t *readout;
            for (r = 0; r < SCNN_FRAME_SIZE; ++r) frame[r] = codes[r * SCNN_NUM_STEPS + t];
            readout = scnn_step_frame(&state, frame);
            for (c = 0; c < SCNN_NUM_CLASSES; ++c) printf("%d ", (int)readout[c]);
        }
        for (c = 0; c < SCNN_NUM_CLASSES; ++c) printf("%d ", (int)state.logits[c]);
    }
    return 0;
}
""")
    subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{c_dir}", "-o", str(tmp_path / "f"),
                    str(main), str(c_dir / "scnn_model.c")], check=True)
    done = subprocess.run([str(tmp_path / "f")], input=codes.tobytes(), capture_output=True, check=True)
    values = np.array(done.stdout.split(), np.int64).reshape(3, 65, 10)
    reference = make_test_vectors(description, arrays, codes)
    np.testing.assert_array_equal(values[:, :64], reference["frame_logits"].transpose(1, 0, 2))
    np.testing.assert_array_equal(values[:, 64], reference["logits"])
    assert len(np.unique(values[:, :64])) > 20  # the readout moves from frame to frame


@pytest.fixture(scope="module")
def preset_exports(causal_features, tmp_path_factory):
    """Both streaming presets at their real size (16 channels, 128-128 hidden, 20 x 64 input), random weights."""
    return {preset: (*_quantised(preset, causal_features), tmp_path_factory.mktemp(preset))
            for preset in ("streaming", "streaming_rleaky")}


@pytest.mark.parametrize("preset", ["streaming", "streaming_rleaky"])
def test_c_streaming_presets_are_bit_exact(preset, preset_exports, causal_features):
    needs_gcc()
    description, arrays, folder = preset_exports[preset]
    assert [e["activation"]["type"] for e in description["layers"]] == (
        ["lif", "alif", "alif", "lif"] if preset == "streaming" else ["lif", "rlif", "rlif", "lif"])
    assert arrays["layer1.weight"].shape == (128, 320) and arrays["layer2.weight"].shape == (128, 128)
    _check(description, arrays, quantize_input(description, causal_features.numpy()), folder)


def test_cortex_m4_streaming_preset_fits_and_runs_bit_exact_under_qemu(preset_exports, causal_features):
    missing = [tool for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"Cortex-M4 test skipped: {', '.join(missing)} not found (apt-get install gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi qemu-system-arm); tests/test_export_c.py installs them as root")
    description, arrays, folder = preset_exports["streaming"]
    if not (folder / "c" / "scnn_model.c").is_file():
        _check(description, arrays, quantize_input(description, causal_features.numpy()), folder)
    build = build_cortex_m4(folder / "c")
    library = build["library"]
    weights = sum(arrays[f"layer{i}.weight"].size + 4 * len(arrays[f"layer{i}.bias"]) for i in range(4))
    assert weights == 80 + 64 + 40960 + 512 + 16384 + 512 + 1280 + 40  # int8 weights + int32 biases
    assert weights <= library["text"] + library["data"] < 1024 * 1024 and library["bss"] == 0
    assert build["harness"]["data"] + build["harness"]["bss"] < 256 * 1024
    status, output = run_qemu(build["elf"])
    assert status == 0 and "vectors 4 mismatches 0" in output and "frame logits checked" in output, output[-2000:]


@pytest.mark.parametrize("padding", [[1, 2], [0, 1], [2, 0]])
def test_c_padded_rectangular_pooled_convolution_on_static_input(padding, tmp_path):
    """A static-input net whose first two layers are padded 3x2 convolutions with pooling (the taps outside the
    input are zeros, also at the right and bottom edges pooling keeps): bit-exact. The artefact is Model-B-like
    with its convolutions replaced by random int8 weights of the new geometry."""
    from scnn.models import create_model
    from scnn.quant import quantize
    from scnn.quant.integer import integer_widths

    needs_gcc()
    torch.manual_seed(2)
    x = torch.randn(10, 1, 16, 16) * 1.5
    model = create_model("4C3-6C3-P2-16FC-10FC", num_steps=5, input_shape=(1, 16, 16)).eval()
    description, arrays = export_integer(quantize(model, calibration_data=x))
    rng = np.random.default_rng(0)
    shape = (1, 16, 16)
    for index, channels in ((0, 4), (1, 6)):
        entry = description["layers"][index]
        entry.update(kernel=[3, 2], padding=padding)
        arrays[f"layer{index}.weight"] = rng.integers(-60, 60, (channels, shape[0], 3, 2)).astype(np.int8)
        h, w = shape[1] + 2 * padding[0] - 2, shape[2] + 2 * padding[1] - 1
        pool = entry["pool"] or 1
        shape = (channels, h // pool, w // pool)
    arrays["layer2.weight"] = rng.integers(-40, 40, (16, int(np.prod(shape)))).astype(np.int8)
    for index in (1, 2, 3):  # biases near the threshold: every layer spikes and the sums still matter
        shift = description["layers"][index]["activation"]["state_exponent"] - arrays[f"layer{index}.acc_exponent"]
        arrays[f"layer{index}.bias"] = ((arrays[f"layer{index}.threshold"].max() * 3 // 4) << shift).astype(np.int32)
    description["widths"] = integer_widths(description, arrays)
    codes = quantize_input(description, x.numpy())
    save_integer(description, arrays, tmp_path / "integer", vectors=make_test_vectors(description, arrays, codes))
    export_c(tmp_path / "integer", tmp_path / "c")
    done = subprocess.run([str(build_host(tmp_path / "c"))], capture_output=True, text=True)
    assert done.returncode == 0 and "vectors 10 mismatches 0" in done.stdout, done.stdout[-1500:]
    counts = np.stack(run_integer(description, arrays, codes).spike_counts, 1)
    assert counts.sum(0).min() > 0, counts.sum(0)


def test_c_streaming_preset_has_no_undefined_behaviour(preset_exports, causal_features):
    """Both presets' C under gcc's undefined-behaviour sanitiser: clean and bit-exact on the vectors."""
    needs_gcc()
    for preset in ("streaming", "streaming_rleaky"):
        description, arrays, folder = preset_exports[preset]
        if not (folder / "c" / "scnn_model.c").is_file():
            _check(description, arrays, quantize_input(description, causal_features.numpy()), folder)
        c_dir, binary = folder / "c", folder / "harness-ubsan"
        done = subprocess.run(["gcc", "-O1", "-fsanitize=undefined,bounds", "-fno-sanitize-recover=all", "-std=c99",
                               "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(c_dir / "scnn_harness.c"),
                               str(c_dir / "scnn_model.c")], capture_output=True, text=True)
        if done.returncode and "sanitize" in done.stderr and "cannot find" in done.stderr:
            pytest.skip(f"gcc has no undefined-behaviour sanitiser here: {done.stderr[-300:]}")
        run = subprocess.run([str(binary)], capture_output=True, text=True)
        assert run.returncode == 0 and "runtime error" not in run.stderr, run.stderr[-2000:]
        assert "vectors 4 mismatches 0" in run.stdout


@pytest.mark.parametrize("neuron,overrides", [("rleaky", {}), ("rleaky", {"reset_mechanism": "zero"}),
                                              ("synaptic", {}), ("alif", {})])
def test_c_neurons_in_every_layer_of_a_static_conv_net(neuron, overrides, tmp_path):
    """Spec nets (direct input) with the neuron in every layer, the convolution's too: per-channel constants over
    a pooled 2-D map and, for RLeaky, a padded 3x3 recurrent convolution of the layer's own spike map."""
    from scnn.models import create_model
    from scnn.quant import quantize

    needs_gcc()
    torch.manual_seed(3)
    model = create_model("4C3-P2-16FC-10FC", neuron=neuron, num_steps=5, input_shape=(1, 12, 12), **overrides).eval()
    with torch.no_grad():
        for block in model.blocks[1:]:
            for parameter in block.synapse.parameters():
                parameter.mul_(4)
    x = torch.randn(8, 1, 12, 12) * 1.5
    description, arrays = export_integer(quantize(model, calibration_data=x))
    kind = {"rleaky": "rlif", "synaptic": "synaptic", "alif": "alif"}[neuron]
    assert [e["activation"]["type"] for e in description["layers"]] == [kind] * 3
    if kind == "rlif":
        assert description["layers"][0]["activation"]["recurrent"]["type"] == "conv"
    codes = quantize_input(description, x.numpy())
    save_integer(description, arrays, tmp_path / "integer", vectors=make_test_vectors(description, arrays, codes))
    export_c(tmp_path / "integer", tmp_path / "c")
    done = subprocess.run([str(build_host(tmp_path / "c"))], capture_output=True, text=True)
    assert done.returncode == 0 and "vectors 8 mismatches 0" in done.stdout, done.stdout[-1500:]
    counts = np.stack(run_integer(description, arrays, codes).spike_counts, 1)
    assert counts.sum(0).min() > 0, counts.sum(0)
