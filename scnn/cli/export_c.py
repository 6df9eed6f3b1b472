"""Write C99 integer inference of a quantised model: weights as const int8_t, the integer neurons (LIF, ALIF,
RLeaky, Synaptic), one-call classify and a streaming step (frame by frame for the streaming presets), no dynamic
memory; a harness that checks the artefact's test vectors; a Makefile for this machine and a Cortex-M4
(docs/integer_format.md specifies the arithmetic).

Example:
    scnn export-c runs/quant/integer --out runs/quant/c && make -C runs/quant/c harness && runs/quant/c/harness
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artefact", metavar="INT_ARTEFACT",
                        help="the integer artefact written by scnn quantize: OUT/integer (or OUT/integer.json)")
    parser.add_argument("--out", required=True, help="folder for the C files")


def run(args: argparse.Namespace) -> dict:
    from scnn.quant.export_c import export_c

    result = export_c(args.artefact, args.out)
    print(f"wrote {len(result['files'])} files to {args.out}: weights {result['weight_bytes']} bytes (flash), "
          f"state {result['state_bytes']} bytes (RAM), {result['vectors']} test vectors; build with make -C {args.out}")
    return result
