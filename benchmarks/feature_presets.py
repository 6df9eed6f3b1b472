"""Choose the default MFCC preset by measurement: validation accuracy of Model B per preset.

Trains Model B (T = 10) on the official split's training part for each candidate
feature configuration and reports accuracy on the validation carve-out (never on
test). Example:
    python benchmarks/feature_presets.py --data-dir ../shared/data/fsdd/recordings --epochs 20 --seeds 0 1 2 \
        --val-fraction 0.3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="runs/feature_presets")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="validation share of train (default 0.1)")
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    args = parser.parse_args()
    summary = {}
    for label, (preset, overrides) in CANDIDATES.items():
        if args.only and label not in args.only:
            continue
        data_config = DataConfig(data_dir=args.data_dir, feature_preset=preset, feature_overrides=overrides,
                                 val_fraction=args.val_fraction)
        data = prepare_data(data_config, progress=False)
        scores, losses = [], []
        for seed in args.seeds:
            # No augmentation: the comparison isolates the features (and is how the README's table was measured).
            config = TrainConfig(model="model_b", model_overrides={"num_steps": 10}, epochs=args.epochs, seed=seed,
                                 threads=args.threads, time_shift=0, time_mask=0, freq_mask=0)
            out = Path(args.out) / f"{preset}-{abs(hash(label)) % 10**6}-s{seed}"
            # a rerun continues (or re-evaluates) the runs already in OUT rather than refusing the folder
            results = train(config, data_config, out, resume=(out / "last.pt").exists(), progress=False, data=data)
            scores.append(results["val_accuracy"])
            rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            losses.append(min(row["val_loss"] for row in rows))
        summary[label] = {"val_accuracy_mean": statistics.mean(scores), "val_accuracies": scores,
                          "best_val_loss_mean": statistics.mean(losses),
                          "preset": preset, "overrides": overrides}
        print(f"{label:45s} val accuracy {statistics.mean(scores):.4f}  {scores}  "
              f"best val loss {statistics.mean(losses):.4f}", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["| features | validation accuracy (mean of seeds) | per seed | best validation loss |", "|---|---:|---|---:|"]
    for label, row in summary.items():
        seeds = ", ".join(f"{100 * a:.2f}" for a in row["val_accuracies"])
        lines.append(f"| {label} | {100 * row['val_accuracy_mean']:.2f} % | {seeds} | {row['best_val_loss_mean']:.3f} |")
    (Path(args.out) / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
