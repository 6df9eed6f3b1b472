"""C99 integer inference (scnn export-c): compiled with gcc -Wall -Wextra -Werror -std=c99 and checked bit-exact
against the numpy integer reference (logits, predictions, per-layer spike counts, membrane traces) on FSDD test
recordings and on test vectors; cross-compiled for a Cortex-M4 and run under qemu (MPS2-AN386, semihosting)."""

import os
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch

from scnn.quant.export_c import build_cortex_m4, build_host, export_c, parse_harness_output, run_qemu
from scnn.quant.integer import (export_integer, make_test_vectors, quantize_input, run_integer, save_integer,
                                vectors_path)

warnings.filterwarnings("ignore", module="brevitas")
ARM_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")


def needs_gcc():
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found: the C export is compiled with gcc")


@pytest.fixture(scope="module")
def fsdd_export(tiny_snn_run, tiny_fsdd, tmp_path_factory):
    """The tiny one-epoch Model B (T = 4) on FSDD, post-training quantised, saved with 16 test vectors, exported
    to C. Returns (description, arrays, data, C folder)."""
    from scnn.quant import quantize
    from scnn.train.evaluate import load_trained_model

    torch.set_num_threads(1)
    _, data = tiny_fsdd
    model, _ = load_trained_model(tiny_snn_run / "best.pt")
    quantized = quantize(model, calibration_data=data.train[0][:64])
    description, arrays = export_integer(quantized, data.feature_config, data.normalizer)
    folder = tmp_path_factory.mktemp("c_model_b")
    vectors = make_test_vectors(description, arrays, quantize_input(description, data.test[0][:16].numpy()))
    save_integer(description, arrays, folder / "integer", vectors=vectors)
    export_c(folder / "integer", folder / "c")
    return description, arrays, data, folder / "c"


def test_c_is_bit_exact_with_the_reference_on_fsdd_test_recordings(fsdd_export):
    needs_gcc()
    description, arrays, data, c_dir = fsdd_export
    binary = build_host(c_dir)
    codes = quantize_input(description, data.test[0][:120].numpy())
    codes.tofile(c_dir / "codes.bin")
    done = subprocess.run([str(binary), str(c_dir / "codes.bin")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "vectors 16 mismatches 0" in done.stdout  # logits, predictions, spike counts and membrane traces
    rows = parse_harness_output(done.stdout)
    assert len(parse_harness_output(done.stdout, vectors=True)) == 16
    expected = run_integer(description, arrays, codes, record_membranes=True)
    assert len(rows) == 120
    np.testing.assert_array_equal([r[1] for r in rows], expected.logits)
    np.testing.assert_array_equal([r[0] for r in rows], expected.predictions)
    np.testing.assert_array_equal([r[2] for r in rows], np.stack(expected.spike_counts, 1))
    assert np.stack(expected.spike_counts, 1)[:, :2].sum(0).min() > 0, "hidden layers spike"
    # the fully connected layer sums its active rows in int16 blocks of 255: these recordings cross a block boundary
    layer0_spikes = (expected.membranes[0] > arrays["layer0.threshold"].reshape(1, 1, -1, 1, 1)).reshape(4, 120, -1)
    assert layer0_spikes.sum(2).max() > 255
    # sizeof(scnn_state_t) as the compiler lays it out = what export_c reports and the header documents:
    # layer-0 current int16 x 5400, hidden current int32 x 128, logits, counts, n_active, step (4 x 15),
    # membranes int8 x 5538, spikes uint8 x 5538, active list uint16 x 5400
    assert "state bytes 33248" in done.stdout and "#define SCNN_STATE_BYTES 33248" in (c_dir / "scnn_model.h").read_text()
    # timing passes (the benchmark's REPEATS): the state is reset per sample, the printed results are the same
    again = subprocess.run([str(binary), str(c_dir / "codes.bin"), "3"], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == done.stdout
    bad = subprocess.run([str(binary), str(c_dir / "codes.bin"), "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "REPEATS must be >= 1, got 0" in bad.stderr


def test_the_harness_fails_on_a_wrong_vector(fsdd_export, tmp_path):
    """A port that is off by one logit, or in one membrane, is caught (the check can fail)."""
    needs_gcc()
    description, arrays, data, _ = fsdd_export
    vectors = make_test_vectors(description, arrays, quantize_input(description, data.test[0][:4].numpy()))
    vectors["logits"][2, 5] += 1
    vectors["trace.layer1"][3, 1, 4] -= 1
    save_integer(description, arrays, tmp_path / "integer", vectors=vectors)
    export_c(tmp_path / "integer", tmp_path / "c")
    done = subprocess.run([str(build_host(tmp_path / "c"))], capture_output=True, text=True)
    assert done.returncode == 1
    assert "MISMATCH vector 2:" in done.stdout and "MISMATCH trace sample 1 step 3 layer 1 neuron 4" in done.stdout
    assert "vectors 4 mismatches 2" in done.stdout


# Other shapes and options of the integer LIF: pooling, per-channel weights and beta, fixed leak, zero reset,
# spike-count readout, narrow states; random weights calibrated on random input.
VARIANTS = [
    ("6C3-P2-32FC-10FC", {"reset_mechanism": "zero", "beta": 0.9, "per_channel_beta": True, "num_steps": 6}, {}),
    ("4C3-8C3-P2-16FC-10FC", {"readout": "spike_count", "num_steps": 5, "beta": 0.8},
     {"per_channel": True, "weight_bits": 4, "state_bits": 6, "leak": "fixed"}),
    ("4C5-P3-12FC-10FC", {"threshold": 0.5, "num_steps": 3}, {"state_bits": 12, "weight_bits": 6}),
    # a first layer that is fully connected on the codes; 16-bit state: int16 membranes, int32 sums and current
    ("48FC-10FC", {"num_steps": 4}, {"state_bits": 16}),
]


@pytest.mark.parametrize("spec,model_overrides,quant_options", VARIANTS)
def test_c_matches_the_reference_on_other_nets(spec, model_overrides, quant_options, tmp_path):
    from scnn.models import create_model
    from scnn.quant import quantize

    needs_gcc()
    torch.manual_seed(0)
    model = create_model(spec, **model_overrides).eval()
    with torch.no_grad():  # random deeper layers rarely spike: stronger synapses make every layer spike
        for block in model.blocks[1:]:
            for parameter in block.synapse.parameters():
                parameter.mul_(4)
    x = torch.randn(24, 1, 32, 32) * 1.5
    quantized = quantize(model, calibration_data=x, **quant_options)
    description, arrays = export_integer(quantized)
    codes = quantize_input(description, x.numpy())
    save_integer(description, arrays, tmp_path / "integer", vectors=make_test_vectors(description, arrays, codes))
    exported = export_c(tmp_path / "integer.json", tmp_path / "c")
    for flags in ("-O2", "-O3"):  # the vectorised loops of -O3 and the scalar ones of -O2 give the same numbers
        done = subprocess.run([str(build_host(tmp_path / "c", optimisation=flags))], capture_output=True, text=True)
        assert done.returncode == 0 and "vectors 24 mismatches 0" in done.stdout, done.stdout[-1500:]
        assert f"state bytes {exported['state_bytes']}" in done.stdout
    expected = run_integer(description, arrays, codes)
    assert np.stack(expected.spike_counts, 1).sum(0).min() > 0, "every layer spikes somewhere"


def test_c_fully_connected_sums_are_exact_at_the_int16_block_limit(tmp_path):
    """The spike-fed fully connected layer adds 255 rows at a time in int16: with every weight at -128 a block
    reaches -32640, the edge of int16; with +127 and -128 mixed the sums cancel. Both must stay bit-exact,
    with hundreds of active inputs per step (several blocks) and accumulators far beyond int16."""
    from scnn.models import create_model
    from scnn.quant import quantize
    from scnn.quant.integer import integer_widths

    needs_gcc()
    torch.manual_seed(1)
    model = create_model("8C3-16FC-10FC", num_steps=4).eval()
    x = torch.randn(6, 1, 32, 32) * 3
    quantized = quantize(model, calibration_data=x)
    description, arrays = export_integer(quantized)
    arrays["layer0.bias"] = np.abs(arrays["layer0.bias"]) + 2 ** 12  # layer 0 spikes a lot
    weight = np.full(arrays["layer1.weight"].shape, -128, np.int8)
    weight[8:] = np.where(np.arange(weight.shape[1]) % 3 == 0, 127, -128)  # half the outputs: mixed signs
    arrays["layer1.weight"] = weight
    codes = quantize_input(description, x.numpy())
    per_step = run_integer(description, arrays, codes, record_membranes=True).membranes[0]
    active = (per_step > arrays["layer0.threshold"].reshape(1, 1, -1, 1, 1)).reshape(4, 6, -1).sum(2)
    assert active.min() > 2 * 255, active  # every step spans at least three blocks
    # biases that cancel the typical sum, so the currents land inside the membrane range (not saturated) and
    # every unit of the sums shows in the membranes
    typical = weight.astype(np.int64).sum(1) * active.mean() / weight.shape[1]
    arrays["layer1.bias"] = np.round(-typical).astype(np.int32)
    description["widths"] = integer_widths(description, arrays)
    assert description["widths"][1]["acc_bits"] > 16
    vectors = make_test_vectors(description, arrays, codes)
    membranes = run_integer(description, arrays, codes, record_membranes=True).membranes[1]
    assert len(np.unique(membranes)) > 20 and (membranes > -128).mean() > 0.5  # the sums matter
    save_integer(description, arrays, tmp_path / "integer", vectors=vectors)
    export_c(tmp_path / "integer", tmp_path / "c")
    done = subprocess.run([str(build_host(tmp_path / "c"))], capture_output=True, text=True)
    assert done.returncode == 0 and "vectors 6 mismatches 0" in done.stdout, done.stdout[-1500:]


def test_c_has_no_undefined_behaviour(fsdd_export, tmp_path):
    """The generated C under gcc's undefined-behaviour sanitiser (signed overflow, bad shifts, out-of-bounds
    indices, misaligned loads): the test vectors and 40 FSDD test recordings run clean and bit-exact."""
    needs_gcc()
    description, arrays, data, c_dir = fsdd_export
    binary = tmp_path / "harness-ubsan"
    done = subprocess.run(["gcc", "-O1", "-g", "-fsanitize=undefined,bounds", "-fno-sanitize-recover=all", "-std=c99",
                           "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(c_dir / "scnn_harness.c"),
                           str(c_dir / "scnn_model.c")], capture_output=True, text=True)
    if done.returncode and "sanitize" in done.stderr and "cannot find" in done.stderr:
        pytest.skip(f"gcc has no undefined-behaviour sanitiser here: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    codes = quantize_input(description, data.test[0][:40].numpy())
    codes.tofile(tmp_path / "codes.bin")
    run = subprocess.run([str(binary), str(tmp_path / "codes.bin")], capture_output=True, text=True)
    assert run.returncode == 0 and "runtime error" not in run.stderr, run.stderr[-2000:]
    assert "vectors 16 mismatches 0" in run.stdout
    np.testing.assert_array_equal([r[1] for r in parse_harness_output(run.stdout)],
                                  run_integer(description, arrays, codes).logits)


def test_c_input_quantiser_and_normaliser_match_numpy(fsdd_export, tmp_path):
    """The only float step: normalise raw features, quantise to codes, exactly as normalize_features +
    quantize_input (float32 on both sides)."""
    from scnn.quant.integer import normalize_features

    needs_gcc()
    description, arrays, data, c_dir = fsdd_export
    rng = np.random.default_rng(0)
    raw = (rng.normal(size=(20, 32, 32)) * 60 + rng.normal(size=(1, 32, 1)) * 30).astype(np.float32)
    raw[0, :4, :4] = 0.0  # ties and zeros
    main = tmp_path / "quantise.c"
    main.write_text(f"""#include <stdio.h>
#include "scnn_model.h"
int main(void) {{
    static float x[SCNN_INPUT_SIZE]; static int8_t codes[SCNN_INPUT_SIZE]; int n;
    while (fread(x, sizeof(float), SCNN_INPUT_SIZE, stdin) == SCNN_INPUT_SIZE) {{
        scnn_normalize_features(x, 32); scnn_quantize_input(x, codes); fwrite(codes, 1, SCNN_INPUT_SIZE, stdout);
    }}
    (void)n; return 0;
}}
""")
    subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{c_dir}", "-o", str(tmp_path / "q"),
                    str(main), str(c_dir / "scnn_model.c")], check=True)
    done = subprocess.run([str(tmp_path / "q")], input=raw.tobytes(), capture_output=True, check=True)
    expected = quantize_input(description, normalize_features(description, arrays, raw))
    np.testing.assert_array_equal(np.frombuffer(done.stdout, np.int8).reshape(expected.shape), expected)
    assert len(np.unique(expected)) > 50


def test_export_c_command_and_clear_errors(fsdd_export, tmp_path, capsys):
    from scnn.cli import main as scnn
    from scnn.models import create_model
    from scnn.quant import quantize

    description, arrays, _, c_dir = fsdd_export
    result = scnn(["export-c", str(c_dir.parent / "integer"), "--out", str(tmp_path / "c")])
    assert result["vectors"] == 16 and (tmp_path / "c" / "scnn_model.c").read_text() == (c_dir / "scnn_model.c").read_text()
    assert "weights 693110 bytes (flash)" in capsys.readouterr().out  # 691,254 int8 weights + 4 x 464 biases
    with pytest.raises(SystemExit):
        scnn(["export-c", str(tmp_path / "nowhere" / "integer"), "--out", str(tmp_path / "x")])
    assert "nowhere/integer.json: no integer artefact" in capsys.readouterr().err
    torch.manual_seed(0)
    cnn = quantize(create_model("control_cnn").eval(), calibration_data=torch.randn(4, 1, 32, 32))
    save_integer(*export_integer(cnn), tmp_path / "cnn")
    with pytest.raises(ValueError, match="only spiking artefacts"):
        export_c(tmp_path / "cnn", tmp_path / "cnn_c")
    described = {**description, "layers": [dict(e) for e in description["layers"]]}
    described["layers"][1] = {**described["layers"][1], "activation": {"type": "relu", "bits": 8, "exponent": 0}}
    save_integer(described, arrays, tmp_path / "mixed")
    with pytest.raises(ValueError, match="layer 1 has a 'relu' activation"):
        export_c(tmp_path / "mixed", tmp_path / "mixed_c")
    for change, message in (({"kernel": [3, 1]}, r"layer 0 says kernel \[3, 1\], its weights are 3x3"),
                            ({"stride": 2}, "layer 0 convolution has stride 2; the C code runs stride-1")):
        changed = {**description, "layers": [{**description["layers"][0], **change}, *description["layers"][1:]]}
        save_integer(changed, arrays, tmp_path / "conv")
        with pytest.raises(ValueError, match=message):
            export_c(tmp_path / "conv", tmp_path / "conv_c")
    # frame-by-frame input is checked first: an unknown kind, or steps that are not one per frame
    torch.manual_seed(0)
    streaming = quantize(create_model("streaming_rleaky", input_shape=(1, 12, 16), channels=4, hidden=(24, 16)).eval(),
                         calibration_data=torch.randn(4, 1, 12, 16))
    sequence, sequence_arrays = export_integer(streaming)
    for change, message in (({"input_kind": "spikes"}, "input_kind 'spikes' is not supported"),
                            ({"num_steps": 8}, "num_steps 8 != 16 frames"),
                            ({"input_kind": "static"}, "layer 1 fully connected layer takes 48 inputs")):
        save_integer({**sequence, **change}, sequence_arrays, tmp_path / "streaming")
        with pytest.raises(ValueError, match=message):
            export_c(tmp_path / "streaming", tmp_path / "streaming_c")
    recurrent = {**sequence, "layers": [dict(e) for e in sequence["layers"]]}
    for synapse, message in (("delay", "layer 1 has a 'delay' recurrent synapse"),
                             ("conv", r"layer 1 recurrent convolution has 2-D weights \(24, 24\)")):
        recurrent["layers"][1]["activation"] = {**recurrent["layers"][1]["activation"], "recurrent": {"type": synapse}}
        save_integer(recurrent, sequence_arrays, tmp_path / "recurrent")
        with pytest.raises(ValueError, match=message):
            export_c(tmp_path / "recurrent", tmp_path / "recurrent_c")
    # a recurrent convolution that does not keep its layer's map (no padding): 4x5x5 spikes -> 4x3x3
    conv_net = quantize(create_model("4C3-P2-16FC-10FC", neuron="rleaky", num_steps=2, input_shape=(1, 12, 12)).eval(),
                        calibration_data=torch.randn(4, 1, 12, 12))
    conv_description, conv_arrays = export_integer(conv_net)
    conv_description["layers"][0]["activation"]["recurrent"]["padding"] = [0, 0]
    save_integer(conv_description, conv_arrays, tmp_path / "recurrent")
    with pytest.raises(ValueError, match=r"layer 0 recurrent convolution maps its 4x5x5 spikes \(4 .*\) to 4x3x3"):
        export_c(tmp_path / "recurrent", tmp_path / "recurrent_c")
    assert not (tmp_path / "streaming_c").exists() and not (tmp_path / "recurrent_c").exists()
    wide = {**description, "widths": [dict(w) for w in description["widths"]]}
    wide["widths"][0]["acc_bits"] = 40
    save_integer(wide, arrays, tmp_path / "wide")
    with pytest.raises(ValueError, match="layer 0 needs 40-bit acc values"):
        export_c(tmp_path / "wide", tmp_path / "wide_c")


# --------------------------------------------------------------------------- Cortex-M4 under qemu


@pytest.fixture(scope="module")
def arm_toolchain():
    """arm-none-eabi-gcc and qemu-system-arm; installed quietly with apt when missing and running as root,
    otherwise the Cortex-M4 tests are skipped with the reason (also shown as a warning)."""
    def missing():
        return [tool for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if not shutil.which(tool)]

    if missing() and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *ARM_PACKAGES], capture_output=True, env=env)
    if missing():
        reason = (f"Cortex-M4 tests skipped: {', '.join(missing())} not found and could not be installed "
                  f"(needs root and apt: apt-get install {' '.join(ARM_PACKAGES)})")
        warnings.warn(reason)
        pytest.skip(reason)


def test_cortex_m4_build_fits_and_runs_bit_exact_under_qemu(arm_toolchain, fsdd_export):
    _, _, _, c_dir = fsdd_export
    build = build_cortex_m4(c_dir)
    library = build["library"]
    flash = library["text"] + library["data"]
    assert 693_110 <= flash < 1024 * 1024, flash  # Model B INT8: the weights, biases and code fit 1 MiB of flash
    # the library has no RAM of its own: the state lives in the caller's struct (the harness's static one)
    assert library["bss"] == 0 and library["data"] == 0 and build["harness"]["bss"] >= 33_248
    assert build["harness"]["data"] + build["harness"]["bss"] < 256 * 1024
    status, output = run_qemu(build["elf"])
    assert status == 0 and "vectors 16 mismatches 0" in output, output[-2000:]
    assert "state bytes 33248" in output  # the same layout on the M4 as on the host
    vectors = np.load(vectors_path(c_dir.parent / "integer"))
    rows = parse_harness_output(output, vectors=True)
    np.testing.assert_array_equal([r[1] for r in rows], vectors["logits"])
    np.testing.assert_array_equal([r[2] for r in rows], vectors["spike_counts"])


@pytest.mark.slow
def test_latency_benchmark_times_c_numpy_and_torch_bit_exact(tiny_snn_run, tmp_path):
    """benchmarks/c_latency.py's library side on the tiny Model B: the C outputs are checked against numpy in the
    same run, every latency is measured, and the Cortex-M4 sizes are reported when the toolchain is there."""
    from scnn.quant.latency import measure_latency

    needs_gcc()
    result = measure_latency(tiny_snn_run / "best.pt", tmp_path, samples=6, repeats=1, calibration_samples=32,
                             c_passes=50)  # 300 inferences: well above the noise of a process start
    assert result["c_bit_exact_with_numpy"] and result["samples"] == 6 and result["c_passes"] == 50
    assert set(result["latency_ms"]) == {"c", "c_O2", "numpy_reference", "numpy_reference_batched", "torch_float",
                                         "torch_brevitas_twin"}
    assert result["c_flags"] == {"c": "gcc -O3 -std=c99", "c_O2": "gcc -O2 -std=c99"}
    assert all(value > 0 for value in result["latency_ms"].values())
    assert result["c_speedup_over_numpy"] == result["latency_ms"]["numpy_reference"] / result["latency_ms"]["c"]
    assert (tmp_path / "latency.json").is_file() and (tmp_path / "c" / "harness").is_file()
    assert (tmp_path / "c" / "harness-O2").is_file()
    if shutil.which("arm-none-eabi-size"):
        m4 = result["cortex_m4"]
        assert m4["flash_bytes"] >= 693_110 and m4["fits_1MiB_flash_256KiB_ram"]
