"""Latency per inference of Model B INT8 on this CPU: the generated C (scnn export-c; gcc -O3, the Makefile's
flags, and -O2), the numpy integer reference and torch (float model and Brevitas twin), in one run, with the
C checked bit-exact against numpy; and the Cortex-M4 flash and RAM of the C library (arm-none-eabi-size).
See scnn.quant.latency for how each is timed. Run it alone on the machine: the numbers are wall times.

Writes the "c_latency" table (scnn.result_tables, docs/results_formats.md): OUT/c_latency.csv, one row for the
run, and its sidecar OUT/c_latency.json; scnn.quant.latency writes OUT/latency.json (the same numbers nested),
the integer artefact and the C beside them.

Example:
    OMP_NUM_THREADS=1 python benchmarks/c_latency.py --checkpoint runs/model_b/best.pt --samples 50 \
        --repeats 5 --c-passes 20 --out runs/c_latency
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scnn.quant.latency import measure_latency
from scnn.result_tables import write_table


def table_row(result: dict) -> dict:
    """The "c_latency" table's row of one run (``result``: :func:`scnn.quant.latency.measure_latency`'s)."""
    latency = result["latency_ms"]
    m4 = result.get("cortex_m4") or {}
    return {
        "checkpoint": result["checkpoint"], "model": result["model"], "num_steps": result["num_steps"],
        "samples": result["samples"], "repeats": result["repeats"], "c_passes": result["c_passes"],
        "c_bit_exact_with_numpy": result["c_bit_exact_with_numpy"],
        "test_accuracy_integer": result["test_accuracy_integer"],
        "c_ms": latency["c"], "c_o2_ms": latency["c_O2"], "numpy_reference_ms": latency["numpy_reference"],
        "numpy_reference_batched_ms": latency["numpy_reference_batched"], "torch_float_ms": latency["torch_float"],
        "torch_brevitas_twin_ms": latency["torch_brevitas_twin"],
        "c_speedup_over_numpy": result["c_speedup_over_numpy"],
        "c_o2_speedup_over_numpy": result["c_O2_speedup_over_numpy"],
        "c_state_bytes": result["c_state_bytes"], "c_weight_bytes": result["c_weight_bytes"],
        "m4_flash_bytes": m4.get("flash_bytes"), "m4_ram_bytes": m4.get("ram_bytes"),
        "m4_fits_1mib_flash_256kib_ram": m4.get("fits_1MiB_flash_256KiB_ram"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="float checkpoint (best.pt of scnn train)")
    parser.add_argument("--samples", type=int, default=50, help="test recordings timed (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--data-dir", help="audio folder (default: the checkpoint's)")
    parser.add_argument("--out", default="runs/c_latency", help="output folder (c_latency.csv, latency.json, integer, c/)")
    parser.add_argument("--c-passes", type=int, default=20,
                        help="times the C harness classifies the samples per timed run (default 20)")
    args = parser.parse_args(argv)
    for name in ("samples", "repeats", "c_passes"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    result = measure_latency(args.checkpoint, args.out, args.samples, args.repeats, args.data_dir,
                             c_passes=args.c_passes)
    write_table([table_row(result)], Path(args.out) / "c_latency.csv", "c_latency",
                {"c_flags": result["c_flags"], "cortex_m4": result.get("cortex_m4"),
                 "argv": list(sys.argv[1:] if argv is None else argv)})
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
