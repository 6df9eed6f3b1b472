"""Sweep one parameter (beta, threshold, num_steps, or any model/training config field).

Several seeds per point; each finished point is appended to OUT/sweep.csv and a rerun
skips the points already there. Writes OUT/sweep_summary.json and OUT/sweep.png
(accuracy and activation sparsity against the parameter, error bars over seeds).
Example (the paper's beta study for Model B):
    python experiments/sweep_param.py --model model_b --param beta --values 0.1 0.3 0.5 0.7 0.9 \
        --seeds 0 1 2 --epochs 15 --data-dir ../shared/data/fsdd/recordings --out runs/sweep_beta_b
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `experiments.train`

from experiments.train import add_data_arguments, data_config_from, parse_key_values
from scnn.io import write_json
from scnn.viz.plots import plot_sweep
from scnn.search.sweep import run_sweep, summarize_sweep
from scnn.train import TrainConfig


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="model_b", help="preset or spec string (default model_b)")
    parser.add_argument("--param", required=True, help="config field to vary: beta, threshold, num_steps, lr, ...")
    parser.add_argument("--values", nargs="+", required=True, help="values of the parameter")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed model option for every run, e.g. num_steps=10 (repeatable)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--out", default="runs/sweep", help="folder for sweep.csv, runs and the figure")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    values = [parse_key_values([f"value={text}"], "--values")["value"] for text in args.values]
    base = TrainConfig(model=args.model, epochs=args.epochs, threads=args.threads,
                       model_overrides=parse_key_values(args.model_option, "--model-option"))
    try:
        rows = run_sweep(args.param, values, args.seeds, base, data_config_from(args), args.out)
    except (FileNotFoundError, ValueError, TypeError) as error:
        sys.exit(f"error: {error}")
    summary = summarize_sweep(rows)
    write_json(f"{args.out}/sweep_summary.json", summary)
    plot_sweep(summary, args.param, f"{args.out}/sweep.png", title=f"{args.model}: {args.param} sweep")
    for row in summary:
        print(f"{args.param}={row['value']}: test {100 * row['test_accuracy_mean']:.2f} ± "
              f"{100 * row['test_accuracy_std']:.2f} %, sparsity {100 * row['activation_sparsity_mean']:.1f} %")
    return rows


if __name__ == "__main__":
    main()
