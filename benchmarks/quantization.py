"""Quantisation benchmark: PTQ and QAT of trained float checkpoints at several bit widths.

For every checkpoint and every weight/activation/state bit width it runs
``scnn.quant.workflow.run_quantization`` in mode "qat" (which measures PTQ first, then fine-tunes) and
records float, PTQ and QAT test accuracy, model size and the integer reference's agreement.
Finished runs (results.json present) are reused. Writes OUT/summary.csv and OUT/summary.md.

Example (float checkpoints from experiments/train.py, official split, T = 10 and T = 1):
    python benchmarks/quantization.py --checkpoint A_T10=runs/float/model_a_t10/best.pt \
        --checkpoint B_T10=runs/float/model_b_t10/best.pt --bits 8,8,8 4,8,8 2,8,8 --epochs 5 --out runs/quant
"""

from __future__ import annotations

import argparse
import csv
import json
import io
import warnings
from pathlib import Path

from scnn.io import write_text
from scnn.quant.config import QuantConfig
from scnn.quant.workflow import QuantRunConfig, run_quantization

COLUMNS = ["model", "bits (w/a/state)", "float %", "PTQ %", "QAT %", "QAT - float (points)", "float32 bytes",
           "quantised bytes", "integer ref. same prediction %", "integer ref. same spike counts %", "QAT s"]


def _row(name: str, bits: tuple[int, int, int], results: dict) -> dict:
    reference = results.get("integer_reference", {})
    return {
        "model": name, "bits (w/a/state)": "/".join(map(str, bits)),
        "float %": 100 * results["float"]["test_accuracy"], "PTQ %": 100 * results["ptq_test_accuracy"],
        "QAT %": 100 * results["quantized"]["test_accuracy"], "QAT - float (points)": -results["accuracy_drop_points"],
        "float32 bytes": results["float"]["size_bytes"], "quantised bytes": results["quantized"]["size_bytes"],
        "integer ref. same prediction %": 100 * reference.get("prediction_agreement", float("nan")),
        "integer ref. same spike counts %": 100 * reference.get("spike_count_agreement", float("nan")),
        "QAT s": results["wall_time_s"],
    }


def markdown(rows: list[dict]) -> str:
    def cell(value):
        return f"{value:.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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
            rows.append(_row(name, bits, results))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(Path(args.out) / "summary.csv", buffer.getvalue())
    write_text(Path(args.out) / "summary.md", markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
