"""Parameters, dense MACs per sample and CPU time per training epoch of every benchmark recipe
(configs/gsc*, shd*, ssc*), timed on random inputs of each recipe's feature shape and extrapolated
from a few batches to the benchmark's training-set size (scnn.train.recipe_cost). No accuracy: the
real data sets are not used. Prints a Markdown table and writes the "recipe_costs" table
(scnn.result_tables, docs/results_formats.md): OUT/recipe_costs.csv, one row per recipe, and its sidecar
OUT/recipe_costs.json (machine, threads, batches, training-set sizes).
Example:
    OMP_NUM_THREADS=1 python benchmarks/recipe_costs.py --threads 1 --batches 10 --out runs/recipe_costs
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from scnn.result_tables import write_table
from scnn.train.recipe_cost import recipe_cost
from scnn.train.run_config import load_run_config

# Training-set sizes as published: Speech Commands v2 official train part 84,843 clips (35 words); SHD
# 8,156 training samples (Cramer et al. 2020; the recipe's validation takes 10 % of them); SSC 75,466.
# The 12-class protocol's training size (ten words + 10 % unknown + 10 % silence) is not known here without
# the data: its row gives the time per 10k samples only.
TRAIN_SIZES = {"gsc35": 84_843, "gsc12": 0, "shd": 8_156 - 816, "ssc": 75_466}
CLASSES = {"gsc35": 35, "gsc12": 12, "shd": 20, "ssc": 35}


def table_row(recipe: str, cost: dict) -> dict:
    """One row of the "recipe_costs" table: ``cost`` is :func:`scnn.train.recipe_cost.recipe_cost`'s result."""
    benchmark = recipe.split("_")[0]
    train_size = TRAIN_SIZES[benchmark] or None
    return {"recipe": recipe, "benchmark": benchmark, "classes": CLASSES[benchmark], "parameters": cost["parameters"],
            "macs_per_sample": cost["macs_per_sample"], "input_shape": list(cost["input_shape"]),
            "timed_samples": cost["timed_samples"], "seconds_per_10k_samples": cost["seconds_per_10k_samples"],
            "train_size": train_size, "seconds_per_epoch": cost["seconds_per_epoch"] if train_size else None}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="configs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per recipe (after one warm-up)")
    parser.add_argument("--out", default="runs/recipe_costs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print("| recipe | parameters | dense MACs / sample | input | s / 10k samples | train size | s / epoch |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for path in sorted(Path(args.configs).glob("*.yaml")):
        benchmark = path.stem.split("_")[0]
        if benchmark not in CLASSES:
            continue
        cost = recipe_cost(load_run_config(path), CLASSES[benchmark], TRAIN_SIZES[benchmark], batches=args.batches)
        rows.append(table_row(path.stem, cost))
        print(f"| {path.stem} | {cost['parameters']:,} | {cost['macs_per_sample']:,} | "
              f"{'x'.join(map(str, cost['input_shape'][1:]))} | {cost['seconds_per_10k_samples']:.0f} | "
              + (f"{TRAIN_SIZES[benchmark]:,} | {cost['seconds_per_epoch']:.0f} |" if TRAIN_SIZES[benchmark]
                 else "unknown | - |"), flush=True)
    write_table(rows, Path(args.out) / "recipe_costs.csv", "recipe_costs",
                {"machine": platform.processor() or platform.machine(), "threads": args.threads,
                 "batches": args.batches, "train_sizes": TRAIN_SIZES, "configs": str(args.configs)})
    return rows


if __name__ == "__main__":
    main()
