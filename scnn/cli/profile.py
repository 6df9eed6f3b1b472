"""Per-sample cost of trained checkpoints: dense MACs, effective MACs/ACs (SynOps), activation
sparsity, an energy estimate, on the test split; one row per checkpoint.

Example:
    scnn profile runs/model_a/best.pt runs/model_b/best.pt --out runs/profile
"""

from __future__ import annotations

import argparse

from scnn.cli.common import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="best.pt files written by scnn train")
    parser.add_argument("--data-dir", help="audio folder (default: the one in each checkpoint's config)")
    parser.add_argument("--max-samples", type=positive_int, help="profile on the first N test samples (default: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--out", default="runs/profile", help="folder for profile.csv, profile.json, profile.md")


def run(args: argparse.Namespace) -> list[dict]:
    from scnn.cli.common import check_checkpoint
    from scnn.viz.tables import COLUMNS, profile_checkpoint, write_rows

    for path in args.checkpoints:  # every one before the first is profiled
        check_checkpoint(path)
    rows = [profile_checkpoint(path, args.data_dir, args.max_samples, args.device) for path in args.checkpoints]
    print(write_rows(rows, args.out, "profile", COLUMNS))
    return rows
