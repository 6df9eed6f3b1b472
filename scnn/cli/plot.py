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
    scnn plot --run runs/main --run runs/ssm_small --sweep runs/sweep_beta_b/sweep.csv \
        --tune runs/tune_b_pareto --compare runs/compare/compare.csv --quant runs/quant/summary.csv \
        --out runs/figures
"""

from __future__ import annotations

import argparse

from scnn.cli.common import nonnegative_int, set_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", action="append", default=[], metavar="DIR", help="training run folder")
    parser.add_argument("--sweep", action="append", default=[], metavar="CSV", help="sweep.csv of a sweep")
    parser.add_argument("--tune", action="append", default=[], metavar="PATH", help="Ray Tune results")
    parser.add_argument("--compare", action="append", default=[], metavar="TABLE", help="compare/profile table")
    parser.add_argument("--quant", action="append", default=[], metavar="PATH",
                        help="scnn quantize result folder(s) or benchmarks/quantization.py summary.csv")
    parser.add_argument("--data-dir", help="audio folder for the spiking figures (default: the checkpoint's)")
    parser.add_argument("--sample", type=nonnegative_int, default=0, help="test recording shown by the spiking figures")
    parser.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--out", default="runs/figures", help="folder for the PNGs (default runs/figures)")


def run(args: argparse.Namespace) -> list:
    from scnn.viz.figures import (cost_figures, quant_figures, run_figures, sweep_figures, sweeps_comparison_figures,
                                  tune_figures)

    if not (args.run or args.sweep or args.tune or args.compare or args.quant):
        raise ValueError("nothing to plot: give at least one --run, --sweep, --tune, --compare or --quant")
    set_threads(args.threads)
    paths = []
    for run_dir in args.run:
        paths += run_figures(run_dir, args.out, args.data_dir, args.sample)
    for sweep in args.sweep:
        paths += sweep_figures(sweep, args.out)
    paths += sweeps_comparison_figures(args.sweep, args.out)
    for tune in args.tune:
        paths += tune_figures(tune, args.out)
    if args.compare:
        paths += cost_figures(args.compare, args.out)
    if args.quant:
        paths += quant_figures(args.quant, args.out)
    for path in paths:
        print(path)
    return paths
