"""Cost of every accuracy: per-sample dense MACs, synaptic operations, sparsity, footprint and energy.

Example:
    python experiments/profile_cost.py runs/model_a/best.pt runs/model_b/best.pt --data-dir DIR --out runs/profile
See scnn/metrics.py for the definitions (NeuroBench's) and the time-step conventions.
(Named profile_cost.py, not profile.py: a script folder on sys.path holding profile.py shadows
the standard library's profile module, which torch imports.)
"""

from __future__ import annotations

import argparse
import sys

from scnn.viz.tables import COLUMNS, profile_checkpoint, write_rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="best.pt files written by train.py")
    parser.add_argument("--data-dir", help="audio folder (default: the one in each checkpoint's config)")
    parser.add_argument("--max-samples", type=int, help="profile on the first N test samples (default: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--out", default="runs/profile", help="folder for profile.csv, profile.json, profile.md")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    try:
        rows = [profile_checkpoint(path, args.data_dir, args.max_samples, args.device) for path in args.checkpoints]
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(write_rows(rows, args.out, "profile", COLUMNS))
    return rows


if __name__ == "__main__":
    main()
