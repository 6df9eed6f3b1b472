"""Latency per inference of an INT8 spec net on this CPU: the generated C, the numpy integer reference and torch,
in one run (:func:`measure_latency`), plus the Cortex-M4 flash and RAM of the C library.

How each is timed (one thread everywhere, batch 1, ``time.perf_counter``, best of ``repeats``; the repeats
go round-robin over the contenders, so a burst of load on a shared machine hits them alike):
    C:      the harness binary (gcc -O3, the Makefile's flags; also -O2) classifying the N samples
            ``c_passes`` times and run on none; (wall(N x passes) - wall(0)) / (N x passes), so process start
            and the test-vector check cancel out. Its outputs are checked bit-exact against numpy.
    numpy:  :func:`scnn.quant.integer.run_integer` on one sample at a time (and on all N at once, per sample).
    torch:  the float model and the fake-quantised Brevitas twin, one sample at a time, ``torch.no_grad``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch


def _best_round_robin(functions: dict, repeats: int) -> dict:
    """{name: the shortest wall time of function()} over ``repeats`` rounds that call each function once."""
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def measure_latency(checkpoint: str | Path, out_dir: str | Path, samples: int = 50, repeats: int = 3,
                    data_dir: str | None = None, calibration_samples: int = 256, c_passes: int = 20) -> dict:
    """Post-training quantise (8-bit weights, activations and state) the float checkpoint, export integer
    artefact and C, and time the three on ``samples`` test recordings. Returns (and writes latency.json).

    c_passes: how many times the C harness classifies the samples per timed run (a C inference takes a
    fraction of a millisecond: one pass would be lost in the process start)."""
    from scnn.data.prepare import checkpoint_data
    from scnn.io import write_json
    from scnn.quant import quantize
    from scnn.quant.export_c import build_cortex_m4, build_host, export_c, parse_harness_output
    from scnn.quant.integer import export_integer, make_test_vectors, quantize_input, run_integer, save_integer
    from scnn.train.evaluate import load_trained_model

    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, saved = load_trained_model(checkpoint)
    data = checkpoint_data(saved, {"data_dir": data_dir})
    torch.manual_seed(0)
    calibration = data.train[0][torch.randperm(len(data.train[0]))[:calibration_samples]]
    quantized = quantize(model, calibration_data=calibration).eval()
    description, arrays = export_integer(quantized, data.feature_config, data.normalizer)
    x = data.test[0][:samples]
    codes = quantize_input(description, x.numpy())
    save_integer(description, arrays, out / "integer", vectors=make_test_vectors(description, arrays, codes[:16]))
    exported = export_c(out / "integer", out / "c")
    flags = {"c": "-O3", "c_O2": "-O2"}
    binaries = {name: build_host(out / "c", optimisation=flag, name="harness" if name == "c" else f"harness{flag}")
                for name, flag in flags.items()}
    codes.tofile(out / "c" / "codes.bin")
    (out / "c" / "empty.bin").write_bytes(b"")

    def run_c(binary, path, passes=1):
        return subprocess.run([str(binary), str(path), str(passes)], capture_output=True, text=True,
                              check=True).stdout

    reference = run_integer(description, arrays, codes)
    bit_exact = True
    for binary in binaries.values():
        rows = parse_harness_output(run_c(binary, out / "c" / "codes.bin"))
        bit_exact &= (np.array_equal([r[1] for r in rows], reference.logits)
                      and np.array_equal([r[2] for r in rows], np.stack(reference.spike_counts, 1)))
    contenders = {}
    for name, binary in binaries.items():
        contenders[name] = lambda binary=binary: run_c(binary, out / "c" / "codes.bin", c_passes)
        contenders[f"{name}_empty"] = lambda binary=binary: run_c(binary, out / "c" / "empty.bin")
    contenders["numpy_reference"] = lambda: [run_integer(description, arrays, codes[i:i + 1]) for i in range(len(codes))]
    contenders["numpy_reference_batched"] = lambda: run_integer(description, arrays, codes)
    with torch.no_grad():
        contenders["torch_float"] = lambda: [model(x[i:i + 1]) for i in range(len(x))]
        contenders["torch_brevitas_twin"] = lambda: [quantized(x[i:i + 1]) for i in range(len(x))]
        best = _best_round_robin(contenders, repeats)
    n = len(codes)
    latency = {name: 1e3 * (best[name] - best[f"{name}_empty"]) / (n * c_passes) for name in binaries}
    if min(latency[name] for name in binaries) <= 0:
        raise ValueError(f"C timing lost in noise: {n} samples x {c_passes} passes ran no longer than the process start "
                         "alone; raise c_passes (--c-passes) or samples")
    latency.update({name: 1e3 * best[name] / n for name in ("numpy_reference", "numpy_reference_batched",
                                                            "torch_float", "torch_brevitas_twin")})
    result = {
        "checkpoint": str(checkpoint), "model": model.config.spec, "num_steps": description["num_steps"],
        "samples": n, "repeats": repeats, "c_passes": c_passes, "c_bit_exact_with_numpy": bool(bit_exact),
        "c_flags": {name: f"gcc {flag} -std=c99" for name, flag in flags.items()},
        "test_accuracy_integer": float((reference.predictions == data.test[1][:samples].numpy()).mean()),
        "latency_ms": latency,
        "c_state_bytes": exported["state_bytes"], "c_weight_bytes": exported["weight_bytes"],
    }
    result["c_speedup_over_numpy"] = result["latency_ms"]["numpy_reference"] / result["latency_ms"]["c"]
    result["c_O2_speedup_over_numpy"] = result["latency_ms"]["numpy_reference"] / result["latency_ms"]["c_O2"]
    if shutil.which("arm-none-eabi-gcc") and shutil.which("arm-none-eabi-size"):
        build = build_cortex_m4(out / "c")
        library = build["library"]
        result["cortex_m4"] = {
            "library": library, "harness": build["harness"],
            "flash_bytes": library["text"] + library["data"],
            "ram_bytes": library["data"] + library["bss"] + exported["state_bytes"],
            "fits_1MiB_flash_256KiB_ram": library["text"] + library["data"] <= 1024 * 1024
            and library["data"] + library["bss"] + exported["state_bytes"] <= 256 * 1024}
    write_json(out / "latency.json", result)
    return result
