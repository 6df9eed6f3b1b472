"""Quantisation benchmark: PTQ and QAT of trained float checkpoints at several bit widths.

For every checkpoint and every weight/activation/state bit width it runs
``scnn.quant.workflow.run_quantization`` in mode "qat" (which measures PTQ first, then fine-tunes) and
records float, PTQ and QAT test accuracy, model size and the integer reference's agreement.
Finished runs (results.json present) are reused. Writes the "quantization" table
(:mod:`scnn.result_tables`, docs/results_formats.md): OUT/summary.csv, one row per run with its
folder OUT/NAME_wWaAsS and bit widths as data, its sidecar OUT/summary.json, and OUT/summary.md
for people.

Every run starts from --config FILE (a quantize config, e.g. configs/quantize/fsdd_model_b_int8.yaml, the
README's table) when given, else from QAT's defaults with --epochs 5, --lr 5e-4, --threads 2; the flags given
override it, and --checkpoint and --bits set each run's checkpoint and bit widths.

Example (float checkpoints from experiments/train.py, official split, T = 10 and T = 1):
    python benchmarks/quantization.py --checkpoint A_T10=runs/float/model_a_t10/best.pt \
        --checkpoint B_T10=runs/float/model_b_t10/best.pt --bits 8,8,8 4,8,8 2,8,8 --epochs 5 --out runs/quant
    python benchmarks/quantization.py --config configs/quantize/fsdd_model_b_int8.yaml \
        --checkpoint B_T10=runs/float/model_b_t10/best.pt --bits 8,8,8 4,8,8 2,8,8 --out runs/quant
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from scnn.io import write_text
from scnn.quant.workflow import load_quantize_config, run_quantization
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


# Without --config: the settings of the README's table (configs/quantize/fsdd_model_b_int8.yaml holds them too).
BENCHMARK_DEFAULTS = {"epochs": 5, "lr": 5e-4, "threads": 2}


def run_config(config_file: str | None, base: dict, given: dict, checkpoint: str, bits: tuple):
    """One run's QuantRunConfig: the config file (or ``base``), the flags ``given``, this checkpoint and these bits,
    in mode qat (PTQ measured first, then QAT)."""
    return load_quantize_config(config_file, (), {
        "quantize": {**base, **given, "mode": "qat", "checkpoint": checkpoint},
        "quant": {"weight_bits": bits[0], "act_bits": bits[1], "state_bits": bits[2]}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                        help="a float checkpoint and the name it gets in the table (repeatable)")
    parser.add_argument("--bits", nargs="+", default=["8,8,8"], metavar="W,A,S",
                        help="weight, activation and state bits per run (default 8,8,8)")
    parser.add_argument("--config", metavar="FILE", help="quantize config every run starts from "
                        "(e.g. configs/quantize/fsdd_model_b_int8.yaml)")
    parser.add_argument("--epochs", type=int, help="QAT epochs (default: the config's, else 5)")
    parser.add_argument("--lr", type=float, help="QAT learning rate (default: the config's, else 5e-4)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the config's, else 2)")
    parser.add_argument("--data-dir", help="FSDD folder (default: the checkpoint's)")
    parser.add_argument("--out", default="runs/quant")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="brevitas")
    given = {name: getattr(args, name) for name in ("epochs", "lr", "threads") if getattr(args, name) is not None}
    base = {} if args.config else dict(BENCHMARK_DEFAULTS)

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
                results = run_quantization(run_config(args.config, base, given, path, bits), out,
                                           data_dir=args.data_dir, progress=False)
            # The run folder and the bit widths are data in the row: readers never parse the folder name.
            rows.append(quantization_row(results, name, out.name))
            print(markdown_table(rows[-1:], "quantization", SHOWN, LABELS).splitlines()[-1], flush=True)
    first = run_config(args.config, base, given, args.checkpoint[0].partition("=")[2], (8, 8, 8))
    write_table(rows, Path(args.out) / "summary.csv", "quantization",
                metadata={"epochs": first.epochs, "lr": first.lr, "threads": first.threads, "config": args.config})
    table = markdown_table(rows, "quantization", SHOWN, LABELS)
    write_text(Path(args.out) / "summary.md", table)
    print(table)


if __name__ == "__main__":
    main()
