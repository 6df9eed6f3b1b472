"""Latency per inference of Model B INT8 on this CPU: the generated C (scnn export-c; gcc -O3, the Makefile's
flags, and -O2), the numpy integer reference and torch (float model and Brevitas twin), in one run, with the
C checked bit-exact against numpy; and the Cortex-M4 flash and RAM of the C library (arm-none-eabi-size).
See scnn.quant.latency for how each is timed. Run it alone on the machine: the numbers are wall times.

Example:
    OMP_NUM_THREADS=1 python benchmarks/c_latency.py --checkpoint runs/model_b/best.pt --samples 50 \
        --repeats 5 --c-passes 20 --out runs/c_latency
"""

from __future__ import annotations

import argparse
import json

from scnn.quant.latency import measure_latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="float checkpoint (best.pt of scnn train)")
    parser.add_argument("--samples", type=int, default=50, help="test recordings timed (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--data-dir", help="audio folder (default: the checkpoint's)")
    parser.add_argument("--out", default="runs/c_latency", help="output folder (latency.json, integer, c/)")
    parser.add_argument("--c-passes", type=int, default=20,
                        help="times the C harness classifies the samples per timed run (default 20)")
    args = parser.parse_args()
    for name in ("samples", "repeats", "c_passes"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    result = measure_latency(args.checkpoint, args.out, args.samples, args.repeats, args.data_dir,
                             c_passes=args.c_passes)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
