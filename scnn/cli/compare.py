"""The paper's results table from our trained runs, side by side with the paper's values.

Each RUN is a training output folder (best.pt + results.json). Example:
    scnn compare runs/accuracy/control_cnn-seed0 runs/accuracy/model_a-seed0 \
        runs/accuracy/model_b-seed0 runs/t1/model_a runs/t1/model_b --out runs/compare
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.cli.common import positive_int

COLUMNS = ["architecture", "T", "accuracy", "paper_accuracy", "quantized_accuracy", "paper_int8_accuracy",
           "parameters", "dense_macs", "dense_macs_per_step", "paper_flops", "effective_macs", "effective_acs",
           "activation_sparsity", "energy_float32_nj", "dense_energy_float32_nj"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="training output folders holding best.pt and results.json")
    parser.add_argument("--data-dir", help="audio folder (default: the one in each checkpoint's config)")
    parser.add_argument("--max-samples", type=positive_int, help="profile on the first N test samples (default: all)")
    parser.add_argument("--quantized", action="append", default=[], metavar="RUN=QUANT_DIR",
                        help="the scnn quantize output of RUN, for the quantised-accuracy column (repeatable; "
                        "default: RUN/int8 if present)")
    parser.add_argument("--out", default="runs/compare", help="folder for compare.md/.csv/.json")


def run(args: argparse.Namespace) -> list[dict]:
    from scnn.cli.common import check_checkpoint
    from scnn.viz.tables import profile_checkpoint, with_paper_values, write_rows

    quantized = dict(item.split("=", 1) for item in args.quantized if "=" in item)
    unknown = set(quantized) - set(args.runs)
    if len(quantized) != len(args.quantized) or unknown:
        raise ValueError(f"--quantized takes RUN=QUANT_DIR with RUN one of the runs given; got {args.quantized}")
    for run in args.runs:  # every one before the first is profiled
        check_checkpoint(Path(run) / "best.pt")
    rows = [profile_checkpoint(Path(run) / "best.pt", args.data_dir, args.max_samples, quant_dir=quantized.get(run))
            for run in args.runs]
    table = write_rows(with_paper_values(rows), args.out, "compare", COLUMNS)
    print(table)
    print("paper: ISCAS 2023, FSDD random split; its FLOPs were counted on a whole batch by fvcore. "
          "Ours: per sample, official split; dense MACs as executed (first layer once) and per step.")
    return rows
