"""Latency per inference of an INT8 spec net on this CPU: the generated C, the numpy integer reference and torch,
in one run (:func:`measure_latency`), plus the Cortex-M4 flash and RAM of the C library.

How each is timed (one thread everywhere, batch 1, ``time.perf_counter``, best of ``repeats``):
    C:      the harness binary (gcc -O2) run on N samples and on none; (wall(N) - wall(0)) / N, so process
            start and the test-vector check cancel out. Its outputs are checked bit-exact against numpy.
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


def _best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_latency(checkpoint: str | Path, out_dir: str | Path, samples: int = 50, repeats: int = 3,
                    data_dir: str | None = None, calibration_samples: int = 256) -> dict:
    """Post-training quantise (8-bit weights, activations and state) the float checkpoint, export integer
    artefact and C, and time the three on ``samples`` test recordings. Returns (and writes latency.json)."""
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
    binary = build_host(out / "c")
    codes.tofile(out / "c" / "codes.bin")
    (out / "c" / "empty.bin").write_bytes(b"")

    def run_c(path):
        return subprocess.run([str(binary), str(path)], capture_output=True, text=True, check=True).stdout

    rows = parse_harness_output(run_c(out / "c" / "codes.bin"))
    reference = run_integer(description, arrays, codes)
    bit_exact = (np.array_equal([r[1] for r in rows], reference.logits)
                 and np.array_equal([r[2] for r in rows], np.stack(reference.spike_counts, 1)))
    c_total = _best(lambda: run_c(out / "c" / "codes.bin"), repeats)
    c_empty = _best(lambda: run_c(out / "c" / "empty.bin"), repeats)
    numpy_single = _best(lambda: [run_integer(description, arrays, codes[i:i + 1]) for i in range(len(codes))], repeats)
    numpy_batch = _best(lambda: run_integer(description, arrays, codes), repeats)
    with torch.no_grad():
        float_single = _best(lambda: [model(x[i:i + 1]) for i in range(len(x))], repeats)
        twin_single = _best(lambda: [quantized(x[i:i + 1]) for i in range(len(x))], repeats)
    n = len(codes)
    result = {
        "checkpoint": str(checkpoint), "model": model.config.spec, "num_steps": description["num_steps"],
        "samples": n, "repeats": repeats, "c_bit_exact_with_numpy": bool(bit_exact),
        "test_accuracy_integer": float((reference.predictions == data.test[1][:samples].numpy()).mean()),
        "latency_ms": {"c": 1e3 * (c_total - c_empty) / n, "numpy_reference": 1e3 * numpy_single / n,
                       "numpy_reference_batched": 1e3 * numpy_batch / n, "torch_float": 1e3 * float_single / n,
                       "torch_brevitas_twin": 1e3 * twin_single / n},
        "c_state_bytes": exported["state_bytes"], "c_weight_bytes": exported["weight_bytes"],
    }
    result["c_speedup_over_numpy"] = result["latency_ms"]["numpy_reference"] / result["latency_ms"]["c"]
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
