"""Accuracy benchmark: Models A, B and the control CNN on FSDD's official split, several seeds.

Every run is a plain ``train()`` call (the same as experiments/train.py); the summary
gives mean and standard deviation of test accuracy over seeds and the wall time per
epoch. Runs already finished (results.json present) are reused and an interrupted run
resumes from its last.pt, so an interrupted benchmark continues where it stopped. Writes the "accuracy" table (:mod:`scnn.result_tables`,
docs/results_formats.md): OUT/summary.csv (one row per run), its sidecar OUT/summary.json (the
machine) and OUT/summary.md (mean ± std, for people). Example:
    python benchmarks/accuracy.py --data-dir ../shared/data/fsdd/recordings --seeds 0 1 2 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

from scnn.io import write_text
from scnn.result_tables import write_table
from scnn.train import DataConfig, TrainConfig, prepare_data, train

MODELS = {"model_a": {"num_steps": 10}, "model_b": {"num_steps": 10}, "control_cnn": {}}


def accuracy_row(model: str, seed: int, run: str, results: dict) -> dict:
    """One row of the "accuracy" table from a run's results.json (run: its folder, relative to the table's)."""
    return {"model": model, "seed": seed, "run": run, "test_accuracy": results["test_accuracy"],
            "val_accuracy": results["val_accuracy"], "best_epoch": results["best_epoch"],
            "epochs_run": results["epochs_run"], "seconds_per_epoch": results["seconds_per_epoch"],
            "parameters": results["num_params"]}


def summary_markdown(rows: list[dict]) -> str:
    """Mean and standard deviation of test accuracy over seeds, per model (for people)."""
    lines = ["| model | params | test accuracy (mean ± std) | per seed | s/epoch |", "|---|---:|---:|---|---:|"]
    for model in dict.fromkeys(row["model"] for row in rows):
        runs = [row for row in rows if row["model"] == model]
        accuracies = [row["test_accuracy"] for row in runs]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        seeds = ", ".join(f"{100 * a:.2f}" for a in accuracies)
        lines.append(f"| {model} | {runs[0]['parameters']:,} | {100 * statistics.mean(accuracies):.2f} ± "
                     f"{100 * spread:.2f} % | {seeds} | {statistics.mean(r['seconds_per_epoch'] for r in runs):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder of FSDD wavs (default: $SCNN_DATA_DIR or the cache)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models to run (default: all three)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/accuracy")
    args = parser.parse_args()

    out = Path(args.out)
    data_config = DataConfig(data_dir=args.data_dir, split="official")
    data = None  # prepared at the first run that trains: a finished benchmark rereads its tables only
    metadata = {"machine": platform.platform(), "processor": platform.processor(), "epochs": args.epochs,
                "threads": args.threads}
    rows = []
    for name in args.models:
        for seed in args.seeds:
            run = out / f"{name}-seed{seed}"
            if (run / "results.json").exists():
                results = json.loads((run / "results.json").read_text())
            else:
                data = data if data is not None else prepare_data(data_config, progress=False)
                config = TrainConfig(model=name, model_overrides=MODELS.get(name, {}), epochs=args.epochs,
                                     seed=seed, threads=args.threads)
                results = train(config, data_config, run, resume=(run / "last.pt").exists(), progress=False,
                                data=data)
            rows.append(accuracy_row(name, seed, run.name, results))
            print(f"{name} seed {seed}: test {results['test_accuracy']:.4f}  "
                  f"{results['seconds_per_epoch']:.1f} s/epoch", flush=True)
            write_table(rows, out / "summary.csv", "accuracy", metadata)  # after every run: nothing is lost
    table = summary_markdown(rows)
    write_text(out / "summary.md", table)
    print(table)


if __name__ == "__main__":
    main()
