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

Writes OUT/results.json (float, PTQ and quantised test accuracy, model size in bytes,
agreement of the integer reference and of the ONNX export), OUT/quantized.pt,
OUT/integer.npz + OUT/integer.json (the integer artefact) and OUT/model.onnx (QCDQ).
"""

from __future__ import annotations

import argparse

from scnn.cli.common import nonnegative_int, positive_float, positive_int, any_int


def _bits(low: int, high: int):
    def parse(text: str) -> int:
        value = any_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="float checkpoint written by scnn train (best.pt); not for --mode scratch")
    parser.add_argument("--mode", choices=("ptq", "qat", "scratch"), default="qat",
                        help="ptq: calibrate only; qat: calibrate, then fine-tune; scratch: QAT from random weights")
    parser.add_argument("--model", default="model_b", help="model for --mode scratch (preset or spec)")
    parser.add_argument("--num-steps", type=positive_int, help="time steps for --mode scratch")
    parser.add_argument("--weight-bits", type=_bits(2, 8), default=8, help="2-8 (default 8)")
    parser.add_argument("--act-bits", type=_bits(2, 8), default=8, help="input (and ReLU) activations, 2-8 (default 8)")
    parser.add_argument("--state-bits", type=_bits(2, 16), default=8, help="LIF membrane, 2-16 (default 8)")
    parser.add_argument("--per-channel", action="store_true", help="one weight scale per output channel")
    parser.add_argument("--leak", choices=("shift", "fixed"), default="shift",
                        help="shift: beta = 1 - 2^-k, multiplier-free; fixed: beta in steps of 2^-leak_bits")
    parser.add_argument("--leak-bits", type=_bits(1, 15), default=8, help="fractional bits of a fixed leak (default 8)")
    parser.add_argument("--state-range", type=positive_float, default=2.0,
                        help="membrane range covered, as a multiple of the threshold, at least (default 2)")
    parser.add_argument("--epochs", type=nonnegative_int, default=5, help="QAT epochs (default 5)")
    parser.add_argument("--lr", type=positive_float, default=5e-4, help="QAT learning rate (default 5e-4)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--calibration-samples", type=positive_int, default=512,
                        help="training samples for calibration (default 512)")
    parser.add_argument("--train-per-class", type=nonnegative_int, default=0,
                        help="use only the first N training recordings per class (0: all), for quick runs")
    parser.add_argument("--seed", type=any_int, default=0)
    parser.add_argument("--threads", type=nonnegative_int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--data-dir", help="FSDD folder (default: the checkpoint's, else $SCNN_DATA_DIR)")
    parser.add_argument("--no-export", action="store_true", help="skip the exports")
    parser.add_argument("--export", action="append", metavar="NAME", dest="exports",
                        help="run this registered export (repeatable; default: integer, onnx, qonnx; "
                             "integer alone for streaming models)")
    parser.add_argument("--out", default="runs/quantize", help="output folder")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> dict:
    import warnings

    from scnn.quant.config import QuantConfig
    from scnn.quant.workflow import QuantRunConfig, run_quantization

    overrides = {"num_steps": args.num_steps} if args.num_steps else {}
    # Brevitas's deprecation notices for its own internals, printed on every layer: not actionable here.
    warnings.filterwarnings("ignore", module="brevitas")
    config = QuantRunConfig(
        checkpoint=args.checkpoint, mode=args.mode, model=args.model, model_overrides=overrides,
        quant=QuantConfig(weight_bits=args.weight_bits, act_bits=args.act_bits, state_bits=args.state_bits,
                          per_channel=args.per_channel, leak=args.leak, leak_bits=args.leak_bits,
                          state_range=args.state_range),
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, calibration_samples=args.calibration_samples,
        train_per_class=args.train_per_class, seed=args.seed, threads=args.threads, device=args.device,
        export=not args.no_export, **({"exports": tuple(args.exports)} if args.exports else {}))
    results = run_quantization(config, args.out, data_dir=args.data_dir, progress=not args.no_progress)
    float_accuracy = results["float"].get("test_accuracy")
    line = f"quantised test accuracy {results['quantized']['test_accuracy']:.4f}"
    if float_accuracy is not None:
        line += f" (float {float_accuracy:.4f}, PTQ {results['ptq_test_accuracy']:.4f})"
    if "integer_reference" in results:
        line += f"; integer reference agrees on {results['integer_reference']['prediction_agreement']:.2%}"
    print(f"{line}; results in {args.out}/results.json")
    return results
