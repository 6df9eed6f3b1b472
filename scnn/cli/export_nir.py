"""Write a trained spec net or streaming model as a NIR graph (Neuromorphic Intermediate Representation),
one step = 1e-4 s (tau = dt / (1 - beta)): Leaky, RLeaky and Synaptic neurons (see scnn.interop.nir for
each form; a zero-reset Leaky net is read by snntorch's import_from_nir). NIR cannot express ALIF, the zero
reset of RLeaky/Synaptic or max pooling: such a model is refused, naming the layer.

Example:
    scnn export-nir runs/model_b_zero/best.pt runs/model_b_zero/model.nir
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt or last.pt written by scnn train")
    parser.add_argument("out", metavar="OUT.nir", help="the NIR file to write (HDF5)")


def run(args: argparse.Namespace):
    from scnn.cli.common import check_checkpoint
    from scnn.interop.nir import DT, export_nir_checkpoint

    check_checkpoint(args.checkpoint)
    path = export_nir_checkpoint(args.checkpoint, args.out)
    print(f"wrote {path} (NIR, dt = {DT} s per step)")
    return path
