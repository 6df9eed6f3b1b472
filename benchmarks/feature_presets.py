"""Choose the default MFCC preset by measurement: validation accuracy of Model B per preset.

Trains Model B (T = 10) on the official split's training part for each candidate
feature configuration and reports accuracy on the validation carve-out (never on
test). Writes the "feature_presets" table (:mod:`scnn.result_tables`, docs/results_formats.md):
OUT/summary.csv (one row per candidate and seed), its sidecar OUT/summary.json and OUT/summary.md.
Example:
    python benchmarks/feature_presets.py --data-dir ../shared/data/fsdd/recordings --epochs 20 --seeds 0 1 2 \
        --val-fraction 0.3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from scnn.io import write_text
from scnn.result_tables import write_table
from scnn.train import DataConfig, TrainConfig, prepare_data, train

CANDIDATES = {
    "paper": ("paper", {}),
    "paper + trim + normalise": ("paper", {"top_db": 30.0, "normalize": True}),
    "32 MFCC, n_fft 512, hop 256 (1.02 s), trim": ("default", {"n_fft": 512, "hop_length": 256}),
    "32 MFCC, n_fft 256, hop 128 (0.51 s), trim [default]": ("default", {}),
    "20 MFCC + 12 zero rows, n_fft 512, hop 256, trim": ("default", {"n_mfcc": 20, "num_rows": 32, "n_fft": 512,
                                                                     "hop_length": 256}),
    "32 MFCC, n_fft 512, hop 256, no trim": ("default", {"n_fft": 512, "hop_length": 256, "top_db": None}),
}


def candidate_folder(label: str) -> str:
    """A folder name that stays the same from run to run (str hash() does not: it is salted per process)."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def summary_markdown(rows: list[dict]) -> str:
    """Validation accuracy per candidate, mean over seeds (for people)."""
    lines = ["| features | validation accuracy (mean of seeds) | per seed | best validation loss |",
             "|---|---:|---|---:|"]
    for label in dict.fromkeys(row["candidate"] for row in rows):
        runs = [row for row in rows if row["candidate"] == label]
        seeds = ", ".join(f"{100 * row['val_accuracy']:.2f}" for row in runs)
        lines.append(f"| {label} | {100 * statistics.mean(r['val_accuracy'] for r in runs):.2f} % | {seeds} "
                     f"| {statistics.mean(r['best_val_loss'] for r in runs):.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="runs/feature_presets")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation share of train (default 0.1)")
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    parser.add_argument("--train-per-class", type=int, default=0,
                        help="train on the first N recordings per class only (0: all; for quick checks)")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for label, (preset, overrides) in CANDIDATES.items():
        if args.only and label not in args.only:
            continue
        data_config = DataConfig(data_dir=args.data_dir, feature_preset=preset, feature_overrides=overrides,
                                 val_fraction=args.val_fraction, train_per_class=args.train_per_class)
        data = prepare_data(data_config, progress=False)
        for seed in args.seeds:
            # No augmentation: the comparison isolates the features (and is how the README's table was measured).
            config = TrainConfig(model="model_b", model_overrides={"num_steps": 10}, epochs=args.epochs, seed=seed,
                                 threads=args.threads, time_shift=0, time_mask=0, freq_mask=0)
            run = out / f"{candidate_folder(label)}-s{seed}"
            # a rerun continues (or re-evaluates) the runs already in OUT rather than refusing the folder
            results = train(config, data_config, run, resume=(run / "last.pt").exists(), progress=False, data=data)
            history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
            rows.append({"candidate": label, "feature_preset": preset, "feature_overrides": overrides, "seed": seed,
                         "run": run.name, "val_accuracy": results["val_accuracy"],
                         "best_val_loss": min(row["val_loss"] for row in history)})
            write_table(rows, out / "summary.csv", "feature_presets",
                        {"epochs": args.epochs, "val_fraction": args.val_fraction, "threads": args.threads,
                         "train_per_class": args.train_per_class})
        runs = [row for row in rows if row["candidate"] == label]
        print(f"{label:45s} val accuracy {statistics.mean(r['val_accuracy'] for r in runs):.4f}  "
              f"{[r['val_accuracy'] for r in runs]}  best val loss "
              f"{statistics.mean(r['best_val_loss'] for r in runs):.4f}", flush=True)
    table = summary_markdown(rows)
    write_text(out / "summary.md", table)
    print(table)


if __name__ == "__main__":
    main()
