"""Quantise a trained spiking CNN: PTQ, QAT fine-tuning or QAT from scratch; evaluate; export.

Examples:
    # INT8 weights, input and membrane; PTQ baseline, then 5 epochs of QAT from the float checkpoint
    scnn quantize --checkpoint runs/model_b/best.pt --mode qat --epochs 5 --out runs/quant/model_b_int8
    # 4-bit weights, post-training quantisation only
    scnn quantize --checkpoint runs/model_b/best.pt --mode ptq --weight-bits 4 --out runs/quant/b_w4
    # QAT from scratch
    scnn quantize --mode scratch --model model_b --epochs 30 --out runs/quant/b_scratch
    # a streaming checkpoint (ALIF / RLeaky / Synaptic neurons, frame-by-frame input): integer artefact only
    scnn quantize --checkpoint runs/streaming/best.pt --mode qat --epochs 2 --out runs/quant/streaming_int8

    # the README's quantisation table, one row of it, from its config file; other rows by overrides
    scnn quantize --config configs/quantize/fsdd_model_b_int8.yaml --out runs/quant/bench/B_T10_w8a8s8
    scnn quantize --config configs/quantize/fsdd_model_b_int8.yaml quant.weight_bits=4 --out runs/quant/b_w4
    # QAT from scratch on another dataset: the data options (or a config's data section) as scnn train reads them
    scnn quantize --mode scratch --model model_b --dataset folders --data-dir DIR --split random --epochs 30

The run config is built in layers, each over the one before, as scnn train builds its own: the defaults,
--config FILE (YAML or TOML: sections quantize, quant, model, data; see configs/quantize/), the flags below,
then KEY=VALUE overrides (quantize.epochs=10 quant.weight_bits=4 data.split=speaker). With a checkpoint, the
data options change the checkpoint's data config (as scnn evaluate's do); with --mode scratch they are the data.

Writes OUT/results.json (float, PTQ and quantised test accuracy, model size in bytes,
agreement of the integer reference and of the ONNX export, the run config), OUT/quantized.pt,
OUT/integer.npz + OUT/integer.json (the integer artefact) and OUT/model.onnx (QCDQ).
"""

from __future__ import annotations

import argparse

from scnn.cli.common import (add_data_arguments, any_int, check_checkpoint, data_updates, nonnegative_int,
                             positive_float, positive_int)

# flags that set a field of the same name in section quantize or quant (flags left out leave the file's value)
QUANTIZE_FLAGS = ("checkpoint", "mode", "epochs", "lr", "batch_size", "calibration_samples", "seed", "threads",
                  "device")
QUANT_FLAGS = ("weight_bits", "act_bits", "state_bits", "per_channel", "leak", "leak_bits", "state_range")


def _bits(low: int, high: int):
    def parse(text: str) -> int:
        value = any_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. quant.weight_bits=4 quantize.epochs=10 data.split=speaker")
    parser.add_argument("--config", metavar="FILE",
                        help="quantize config (YAML or TOML), e.g. configs/quantize/fsdd_model_b_int8.yaml")
    parser.add_argument("--print-config", action="store_true", help="print the run config and exit")
    parser.add_argument("--checkpoint", help="float checkpoint written by scnn train (best.pt); not for --mode scratch")
    parser.add_argument("--mode", choices=("ptq", "qat", "scratch"),
                        help="ptq: calibrate only; qat: calibrate, then fine-tune (default); scratch: QAT from random "
                             "weights")
    parser.add_argument("--model", help="model for --mode scratch (preset or spec; default model_b)")
    parser.add_argument("--num-steps", type=positive_int, help="time steps for --mode scratch")
    parser.add_argument("--weight-bits", type=_bits(2, 8), help="2-8 (default 8)")
    parser.add_argument("--act-bits", type=_bits(2, 8), help="input (and ReLU) activations, 2-8 (default 8)")
    parser.add_argument("--state-bits", type=_bits(2, 16), help="LIF membrane, 2-16 (default 8)")
    parser.add_argument("--per-channel", action="store_true", default=None, help="one weight scale per output channel")
    parser.add_argument("--leak", choices=("shift", "fixed"),
                        help="shift: beta = 1 - 2^-k, multiplier-free (default); fixed: beta in steps of 2^-leak_bits")
    parser.add_argument("--leak-bits", type=_bits(1, 15), help="fractional bits of a fixed leak (default 8)")
    parser.add_argument("--state-range", type=positive_float,
                        help="membrane range covered, as a multiple of the threshold, at least (default 2)")
    parser.add_argument("--epochs", type=nonnegative_int, help="QAT epochs (default 5)")
    parser.add_argument("--lr", type=positive_float, help="QAT learning rate (default 5e-4)")
    parser.add_argument("--batch-size", type=positive_int, help="QAT batch size (default 32)")
    parser.add_argument("--calibration-samples", type=positive_int,
                        help="training samples for calibration (default 512)")
    parser.add_argument("--seed", type=any_int, help="seed of calibration and QAT (default 0)")
    parser.add_argument("--threads", type=nonnegative_int, help="torch CPU threads (0: default)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--no-export", action="store_true", help="skip the exports")
    parser.add_argument("--export", action="append", metavar="NAME", dest="exports",
                        help="run this registered export (repeatable; default: integer, onnx, qonnx; "
                             "integer alone for streaming models)")
    parser.add_argument("--out", default="runs/quantize", help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    add_data_arguments(parser, defaults=False)


def flag_updates(args: argparse.Namespace) -> dict:
    """The config layer the flags make (only the flags given)."""
    quantize = {name: getattr(args, name) for name in QUANTIZE_FLAGS if getattr(args, name) is not None}
    if args.no_export:
        quantize["export"] = False
    if args.exports:
        quantize["exports"] = list(args.exports)
    model = {"name": args.model} if args.model else {}
    if args.num_steps:
        model["num_steps"] = args.num_steps
    return {"quantize": quantize, "quant": {name: getattr(args, name) for name in QUANT_FLAGS
                                            if getattr(args, name) is not None},
            "model": model, "data": data_updates(args)}


def run_config_from(args: argparse.Namespace):
    """The QuantRunConfig of a ``scnn quantize`` command line."""
    from scnn.quant.workflow import load_quantize_config

    return load_quantize_config(args.config, args.overrides, flag_updates(args))


def run(args: argparse.Namespace) -> dict:
    import warnings

    from scnn.quant.workflow import quantize_config_tree, run_quantization

    config = run_config_from(args)
    if args.print_config:  # prints the config only: the checkpoint need not exist yet
        from omegaconf import OmegaConf

        tree = quantize_config_tree(config)
        print(OmegaConf.to_yaml(OmegaConf.create(tree)), end="")
        return tree
    if config.checkpoint:
        check_checkpoint(config.checkpoint)  # one line before any work, as evaluate and profile do
    # Brevitas's deprecation notices for its own internals, printed on every layer: not actionable here.
    warnings.filterwarnings("ignore", module="brevitas")
    results = run_quantization(config, args.out, progress=not args.no_progress)
    float_accuracy = results["float"].get("test_accuracy")
    line = f"quantised test accuracy {results['quantized']['test_accuracy']:.4f}"
    if float_accuracy is not None:
        line += f" (float {float_accuracy:.4f}, PTQ {results['ptq_test_accuracy']:.4f})"
    if "integer_reference" in results:
        line += f"; integer reference agrees on {results['integer_reference']['prediction_agreement']:.2%}"
    print(f"{line}; results in {args.out}/results.json")
    return results
