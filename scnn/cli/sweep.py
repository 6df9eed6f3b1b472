"""Sweep one parameter (beta, threshold, num_steps, or any model/training config field).

Several seeds per point; each finished point is appended to OUT/sweep.csv and a rerun
skips the points already there. Writes OUT/sweep_summary.json and OUT/sweep.png
(accuracy and activation sparsity against the parameter, error bars over seeds).
Example (the paper's beta study for Model B):
    scnn sweep --model model_b --param beta --values 0.1 0.3 0.5 0.7 0.9 \
        --seeds 0 1 2 --epochs 15 --data-dir ../shared/data/fsdd/recordings --out runs/sweep_beta_b
"""

from __future__ import annotations

import argparse

from scnn.cli.common import (add_base_config_arguments, add_data_arguments, any_int, base_run_config, key_values,
                             nonnegative_int, parse_value, positive_int)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_base_config_arguments(parser)
    parser.add_argument("--model", help="preset or spec string (default: the config's, else model_b)")
    parser.add_argument("--param", required=True, help="config field to vary: beta, threshold, num_steps, lr, ...")
    parser.add_argument("--values", nargs="+", required=True, help="values of the parameter")
    parser.add_argument("--seeds", type=any_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=positive_int, help="epochs per run (default: the config's, else 15)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed model option for every run, e.g. num_steps=10 (repeatable)")
    parser.add_argument("--threads", type=nonnegative_int, help="torch CPU threads (0 = default)")
    parser.add_argument("--out", default="runs/sweep", help="folder for sweep.csv, runs and the figure")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the sweep in OUT (sweep.json, sweep.csv, summary, figure, point folders)")
    add_data_arguments(parser, defaults=False)


def run(args: argparse.Namespace) -> list[dict]:
    from scnn.io import write_json
    from scnn.search.sweep import check_sweep_values, run_sweep, summarize_sweep
    from scnn.viz.plots import plot_sweep

    values = [parse_value(text) for text in args.values]
    epochs = args.epochs or (None if args.config else 15)
    config = base_run_config(args, {"name": args.model, **key_values(args.model_option, "--model-option")},
                             {"epochs": epochs, "threads": args.threads})
    check_sweep_values(args.param, values, config.train, "--param", "--values")
    try:
        rows = run_sweep(args.param, values, args.seeds, config.train, config.data, args.out,
                         overwrite=args.overwrite)
    except TypeError as error:  # a parameter the model's config does not have
        raise ValueError(str(error)) from None
    summary = summarize_sweep(rows)
    write_json(f"{args.out}/sweep_summary.json", summary)
    plot_sweep(summary, args.param, f"{args.out}/sweep.png", title=f"{config.train.model}: {args.param} sweep")
    for row in summary:
        print(f"{args.param}={row['value']}: test {100 * row['test_accuracy_mean']:.2f} ± "
              f"{100 * row['test_accuracy_std']:.2f} %, sparsity {100 * row['activation_sparsity_mean']:.1f} %")
    return rows
