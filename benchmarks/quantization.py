"""Quantisation benchmark: PTQ and QAT of trained float checkpoints at several bit widths.

For every checkpoint and every weight/activation/state bit width it runs
``scnn.quant.workflow.run_quantization`` in mode "qat" (which measures PTQ first, then fine-tunes) and
records float, PTQ and QAT test accuracy, model size and the integer reference's agreement.
Finished runs (results.json present) are reused. Writes the "quantization" table
(:mod:`scnn.result_tables`, docs/results_formats.md): OUT/summary.csv, one row per run with its
folder OUT/NAME_wWaAsS and bit widths as data, its sidecar OUT/summary.json, and OUT/summary.md
for people.

Example (float checkpoints from experiments/train.py, official split, T = 10 and T = 1):
    python benchmarks/quantization.py --checkpoint A_T10=runs/float/model_a_t10/best.pt \
        --checkpoint B_T10=runs/float/model_b_t10/best.pt --bits 8,8,8 4,8,8 2,8,8 --epochs 5 --out runs/quant
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from scnn.io import write_text
from scnn.quant.config import QuantConfig
from scnn.quant.workflow import QuantRunConfig, run_quantization
from scnn.result_tables import markdown_table, write_table
from scnn.viz.tables import quantization_row

# summary.md, for people: the table's columns shown, and their headers.
SHOWN = ["model", "weight_bits", "act_bits", "state_bits", "float_accuracy", "ptq_accuracy", "qat_accuracy",
         "float_bytes", "quantized_bytes", "integer_prediction_agreement", "integer_spike_count_agreement",
         "wall_time_s"]
LABELS = {"weight_bits": "w bits", "act_bits": "a bits", "state_bits": "state bits", "float_accuracy": "float",
          "ptq_accuracy": "PTQ", "qat_accuracy": "QAT", "float_bytes": "float32 bytes",
          "quantized_bytes": "quantised bytes", "integer_prediction_agreement": "integer ref. same prediction",
          "integer_spike_count_agreement": "integer ref. same spike counts", "wall_time_s": "PTQ + QAT s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                        help="a float checkpoint and the name it gets in the table (repeatable)")
    parser.add_argument("--bits", nargs="+", default=["8,8,8"], metavar="W,A,S",
                        help="weight, activation and state bits per run (default 8,8,8)")
    parser.add_argument("--epochs", type=int, default=5, help="QAT epochs (default 5)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", help="FSDD folder (default: the checkpoint's)")
    parser.add_argument("--out", default="runs/quant")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="brevitas")

    rows = []
    for item in args.checkpoint:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"--checkpoint {item!r}: expected NAME=PATH")
        for bits_text in args.bits:
            bits = tuple(int(b) for b in bits_text.split(","))
            if len(bits) != 3:
                parser.error(f"--bits {bits_text!r}: expected three numbers W,A,S")
            out = Path(args.out) / f"{name}_w{bits[0]}a{bits[1]}s{bits[2]}"
            if (out / "results.json").exists():
                results = json.loads((out / "results.json").read_text())
            else:
                config = QuantRunConfig(checkpoint=path, mode="qat",
                                        quant=QuantConfig(weight_bits=bits[0], act_bits=bits[1], state_bits=bits[2]),
                                        epochs=args.epochs, lr=args.lr, threads=args.threads)
                results = run_quantization(config, out, data_dir=args.data_dir, progress=False)
            # The run folder and the bit widths are data in the row: readers never parse the folder name.
            rows.append(quantization_row(results, name, out.name))
            print(markdown_table(rows[-1:], "quantization", SHOWN, LABELS).splitlines()[-1], flush=True)
    write_table(rows, Path(args.out) / "summary.csv", "quantization",
                metadata={"epochs": args.epochs, "lr": args.lr, "threads": args.threads})
    table = markdown_table(rows, "quantization", SHOWN, LABELS)
    write_text(Path(args.out) / "summary.md", table)
    print(table)


if __name__ == "__main__":
    main()
