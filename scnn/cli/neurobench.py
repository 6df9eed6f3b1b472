"""Run NeuroBench's own Benchmark (footprint, connection sparsity, activation sparsity, synaptic operations,
accuracy) on a checkpoint's test split and write neurobench.json next to its results.json, with scnn's own
numbers for the same quantities beside NeuroBench's.

Example:
    scnn neurobench runs/model_b/best.pt --integer-artefact runs/model_b_int8/integer
"""

from __future__ import annotations

import argparse

from scnn.cli.common import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt or last.pt written by scnn train")
    parser.add_argument("--out", help="folder for neurobench.json (default: the checkpoint's folder)")
    parser.add_argument("--data-dir", help="audio folder (default: the one recorded in the checkpoint)")
    parser.add_argument("--integer-artefact", help="OUT/integer of scnn quantize: also count the quantised "
                        "model's footprint in integer bytes")
    parser.add_argument("--max-samples", type=positive_int, help="only the first N test recordings")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> dict:
    from scnn.cli.common import check_checkpoint
    from scnn.interop.neurobench import run_neurobench

    check_checkpoint(args.checkpoint)
    result = run_neurobench(args.checkpoint, args.out, args.data_dir, args.integer_artefact, args.max_samples,
                            progress=not args.no_progress)
    bench = result["neurobench"]
    print(f"NeuroBench on {result['samples']} test recordings: accuracy {bench['ClassificationAccuracy']:.4f}, "
          f"footprint {bench['Footprint']} bytes, activation sparsity {bench['ActivationSparsity']:.4f}, "
          f"SynOps {bench['SynapticOperations']}")
    if "integer_footprint_bytes" in result:
        print(f"integer footprint {result['integer_footprint_bytes']['total']} bytes")
    return result
