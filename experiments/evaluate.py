"""Evaluate a trained checkpoint on the test split; the model is rebuilt from the checkpoint alone.

Example:
    python experiments/evaluate.py --checkpoint runs/model_b/best.pt --data-dir ../shared/data/fsdd/recordings \
        --out runs/model_b/eval
"""

from __future__ import annotations

import argparse
import sys

from scnn.train import evaluate_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt written by train.py")
    parser.add_argument("--data-dir", help="audio folder (default: the one recorded in the checkpoint's config, "
                        "else $SCNN_DATA_DIR / the user cache)")
    parser.add_argument("--split", choices=("official", "speaker", "random"),
                        help="evaluate on this split's test part (default: the split it was trained with)")
    parser.add_argument("--holdout-speaker", help="test speaker for --split speaker")
    parser.add_argument("--out", default="runs/evaluate", help="output folder for results.json and the figure")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    overrides = {key: value for key, value in {"data_dir": args.data_dir, "split": args.split,
                                                "holdout_speaker": args.holdout_speaker}.items() if value is not None}
    try:
        results = evaluate_checkpoint(args.checkpoint, args.out, overrides, device=args.device,
                                      progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(f"test accuracy {results['test_accuracy']:.4f} on {results['num_test']} recordings; "
          f"results in {args.out}/results.json")
    return results


if __name__ == "__main__":
    main()
