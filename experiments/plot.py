"""Regenerate every figure from saved results, without a notebook; PNGs go to --out.

Inputs (any combination, each repeatable):
    --run DIR        a train.py output folder: training curves, confusion matrix, and from best.pt
                     the spike raster, firing rates and membrane traces of one test recording
                     (spiking models; reads the recordings) or the SSM's discretised eigenvalues
    --sweep CSV      experiments/sweep_param.py's sweep.csv: accuracy and sparsity against the parameter
    --tune PATH      sweeps/tune_neuron.py's output folder, its trials.json, or a CSV of trials
    --compare TABLE  experiments/compare.py's compare.csv or profile_cost.py's profile.csv (all in one figure)
    --quant PATH     experiments/quantize.py result folders, a folder of them, or benchmarks/quantization.py's
                     summary.csv (all in one figure): float, PTQ and QAT accuracy and model size against weight
                     bits; validation accuracy per QAT epoch where the result folders hold it
Example:
    python experiments/plot.py --run runs/main --run runs/ssm_small --sweep runs/sweep_beta_b/sweep.csv \
        --tune runs/tune_b_pareto --compare runs/compare/compare.csv --quant runs/quant/summary.csv \
        --out runs/figures
"""

from __future__ import annotations

import argparse
import sys

from scnn.viz.figures import (cost_figures, quant_figures, run_figures, sweep_figures, sweeps_comparison_figures,
                          tune_figures)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], metavar="DIR", help="training run folder")
    parser.add_argument("--sweep", action="append", default=[], metavar="CSV", help="sweep.csv of a sweep")
    parser.add_argument("--tune", action="append", default=[], metavar="PATH", help="Ray Tune results")
    parser.add_argument("--compare", action="append", default=[], metavar="TABLE", help="compare/profile table")
    parser.add_argument("--quant", action="append", default=[], metavar="PATH",
                        help="quantize.py result folder(s) or benchmarks/quantization.py summary.csv")
    parser.add_argument("--data-dir", help="audio folder for the spiking figures (default: the checkpoint's)")
    parser.add_argument("--sample", type=int, default=0, help="test recording shown by the spiking figures")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--out", default="runs/figures", help="folder for the PNGs (default runs/figures)")
    return parser


def main(argv: list[str] | None = None) -> list:
    args = build_parser().parse_args(argv)
    if not (args.run or args.sweep or args.tune or args.compare or args.quant):
        sys.exit("error: nothing to plot: give at least one --run, --sweep, --tune, --compare or --quant")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    paths = []
    try:
        for run in args.run:
            paths += run_figures(run, args.out, args.data_dir, args.sample)
        for sweep in args.sweep:
            paths += sweep_figures(sweep, args.out)
        paths += sweeps_comparison_figures(args.sweep, args.out)
        for tune in args.tune:
            paths += tune_figures(tune, args.out)
        if args.compare:
            paths += cost_figures(args.compare, args.out)
        if args.quant:
            paths += quant_figures(args.quant, args.out)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
