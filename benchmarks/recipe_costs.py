"""Parameters, dense MACs per sample and CPU time per training epoch of every benchmark recipe
(configs/gsc*, shd*, ssc*), timed on random inputs of each recipe's feature shape and extrapolated
from a few batches to the benchmark's training-set size (scnn.train.recipe_cost). No accuracy: the
real data sets are not used. Prints a Markdown table and writes OUT/recipe_costs.json.
Example:
    OMP_NUM_THREADS=1 python benchmarks/recipe_costs.py --threads 1 --batches 10
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from scnn.io import write_json
from scnn.train.recipe_cost import recipe_cost
from scnn.train.run_config import load_run_config

# Training-set sizes as published: Speech Commands v2 official train part 84,843 clips (35 words); SHD
# 8,156 training samples (Cramer et al. 2020; the recipe's validation takes 10 % of them); SSC 75,466.
# The 12-class protocol's training size (ten words + 10 % unknown + 10 % silence) is not known here without
# the data: its row gives the time per 10k samples only.
TRAIN_SIZES = {"gsc35": 84_843, "gsc12": 0, "shd": 8_156 - 816, "ssc": 75_466}
CLASSES = {"gsc35": 35, "gsc12": 12, "shd": 20, "ssc": 35}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="configs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per recipe (after one warm-up)")
    parser.add_argument("--out", default="runs/recipe_costs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    print("| recipe | parameters | dense MACs / sample | input | s / 10k samples | train size | s / epoch |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for path in sorted(Path(args.configs).glob("*.yaml")):
        benchmark = path.stem.split("_")[0]
        if benchmark not in CLASSES:
            continue
        cost = recipe_cost(load_run_config(path), CLASSES[benchmark], TRAIN_SIZES[benchmark], batches=args.batches)
        rows[path.stem] = cost
        print(f"| {path.stem} | {cost['parameters']:,} | {cost['macs_per_sample']:,} | "
              f"{'x'.join(map(str, cost['input_shape'][1:]))} | {cost['seconds_per_10k_samples']:.0f} | "
              + (f"{TRAIN_SIZES[benchmark]:,} | {cost['seconds_per_epoch']:.0f} |" if TRAIN_SIZES[benchmark]
                 else "unknown | - |"), flush=True)
    write_json(Path(args.out) / "recipe_costs.json", {"machine": platform.processor() or platform.machine(),
                                                       "threads": args.threads, "batches": args.batches,
                                                       "train_sizes": TRAIN_SIZES, "recipes": rows})


if __name__ == "__main__":
    main()
