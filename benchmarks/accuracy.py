"""Accuracy benchmark: Models A, B and the control CNN on FSDD's official split, several seeds.

Every run is a plain ``train()`` call (the same as experiments/train.py); the summary
gives mean and standard deviation of test accuracy over seeds and the wall time per
epoch. Runs already finished (results.json present) are reused and an interrupted run
resumes from its last.pt, so an interrupted benchmark continues where it stopped. Example:
    python benchmarks/accuracy.py --data-dir ../shared/data/fsdd/recordings --seeds 0 1 2 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

from scnn.io import write_json, write_text
from scnn.train import DataConfig, TrainConfig, prepare_data, train

MODELS = {"model_a": {"num_steps": 10}, "model_b": {"num_steps": 10}, "control_cnn": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder of FSDD wavs (default: $SCNN_DATA_DIR or the cache)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models to run (default: all three)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/accuracy")
    args = parser.parse_args()

    data_config = DataConfig(data_dir=args.data_dir, split="official")
    data = prepare_data(data_config, progress=False)
    summary = {"machine": platform.platform(), "processor": platform.processor(), "epochs": args.epochs,
               "threads": args.threads, "models": {}}
    for name in args.models:
        runs = []
        for seed in args.seeds:
            out = Path(args.out) / f"{name}-seed{seed}"
            if (out / "results.json").exists():
                results = json.loads((out / "results.json").read_text())
            else:
                config = TrainConfig(model=name, model_overrides=MODELS.get(name, {}), epochs=args.epochs,
                                     seed=seed, threads=args.threads)
                results = train(config, data_config, out, resume=(out / "last.pt").exists(), progress=False,
                                data=data)
            runs.append(results)
            print(f"{name} seed {seed}: test {results['test_accuracy']:.4f}  "
                  f"{results['seconds_per_epoch']:.1f} s/epoch", flush=True)
        accuracies = [r["test_accuracy"] for r in runs]
        summary["models"][name] = {
            "test_accuracy_mean": statistics.mean(accuracies),
            "test_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "test_accuracies": accuracies,
            "seconds_per_epoch_mean": statistics.mean(r["seconds_per_epoch"] for r in runs),
            "best_epochs": [r["best_epoch"] for r in runs],
            "num_params": runs[0]["num_params"],
        }
        write_json(Path(args.out) / "summary.json", summary)
    lines = ["| model | params | test accuracy (mean ± std) | per seed | s/epoch |", "|---|---:|---:|---|---:|"]
    for name, row in summary["models"].items():
        seeds = ", ".join(f"{100 * a:.2f}" for a in row["test_accuracies"])
        lines.append(f"| {name} | {row['num_params']:,} | {100 * row['test_accuracy_mean']:.2f} ± "
                     f"{100 * row['test_accuracy_std']:.2f} % | {seeds} | {row['seconds_per_epoch_mean']:.1f} |")
    write_text(Path(args.out) / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
