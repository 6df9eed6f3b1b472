"""Train a spiking CNN (or the control CNN) on FSDD and evaluate it on the test split.

Example:
    python experiments/train.py --model model_b --data-dir ../shared/data/fsdd/recordings \
        --split official --epochs 30 --num-steps 10 --beta 0.5 --threshold 1.0 --seed 0 --out runs/model_b
"""

from __future__ import annotations

import argparse
import sys

from scnn.features import FEATURE_PRESETS
from scnn.train.losses import LOSSES
from scnn.models import list_models
from scnn.neurons import RESET_MECHANISMS, SURROGATES
from scnn.train import DataConfig, TrainConfig, train


def parse_key_values(pairs: list[str], option: str) -> dict:
    """``["top_db=20", "n_mfcc=20"]`` -> {"top_db": 20.0, "n_mfcc": 20}; numbers, true/false, none parsed."""
    result = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"{option} expects KEY=VALUE, got {pair!r}")
        key, text = pair.split("=", 1)
        lowered = text.lower()
        if lowered in ("none", "null"):
            value = None
        elif lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        result[key.strip()] = value
    return result


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data and features")
    group.add_argument("--data-dir", help="folder of FSDD wavs (default: $SCNN_DATA_DIR, else the user cache, "
                       "downloaded there if absent)")
    group.add_argument("--layout", choices=("fsdd", "folders"), default="fsdd",
                       help="fsdd: {digit}_{speaker}_{index}.wav; folders: root/<label>/*.wav (default: fsdd)")
    group.add_argument("--split", choices=("official", "speaker", "random"), default="official",
                       help="official: takes 0-4 test; speaker: hold out --holdout-speaker; random: stratified")
    group.add_argument("--holdout-speaker", default="theo", help="test speaker for --split speaker (default: theo)")
    group.add_argument("--test-fraction", type=float, default=0.1, help="test share for --split random (default 0.1)")
    group.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of train held out for validation/early stopping (default 0.1)")
    group.add_argument("--split-seed", type=int, default=0, help="seed of the random and validation splits")
    group.add_argument("--features", choices=sorted(FEATURE_PRESETS), default="default",
                       help="MFCC preset (default: default; 'paper' = the reference code's features)")
    group.add_argument("--feature", action="append", default=[], metavar="KEY=VALUE",
                       help="override one feature parameter, e.g. --feature top_db=20 (repeatable)")
    group.add_argument("--cache-dir", help="feature cache folder (default: <user cache>/scnn/features)")
    group.add_argument("--skip-bad", action="store_true",
                       help="skip unreadable/empty/non-audio files (reported) instead of stopping")
    group.add_argument("--train-per-class", type=int, default=0,
                       help="use only the first N training recordings per class (0 = all; for quick runs)")
    group.add_argument("--no-download", action="store_true", help="never download FSDD; fail if it is not found")


def data_config_from(args: argparse.Namespace) -> DataConfig:
    return DataConfig(
        data_dir=args.data_dir, dataset=args.layout, split=args.split, holdout_speaker=args.holdout_speaker,
        test_fraction=args.test_fraction, val_fraction=args.val_fraction, split_seed=args.split_seed,
        feature_preset=args.features, feature_overrides=parse_key_values(args.feature, "--feature"),
        cache_dir=args.cache_dir, skip_bad=args.skip_bad, download=not args.no_download,
        train_per_class=args.train_per_class,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="model_b",
                        help=f"preset ({', '.join(list_models())}) or a spec string such as 6C3-P2-64FC-10FC "
                             "(default: model_b)")
    parser.add_argument("--out", default="runs/train", help="output folder (checkpoints, metrics, results, figures)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_data_arguments(parser)

    neuron = parser.add_argument_group("spiking neurons (ignored by the control CNN)")
    neuron.add_argument("--num-steps", type=int, help="time steps T (default 10)")
    neuron.add_argument("--beta", type=float, help="membrane decay in [0, 1] (default 0.5)")
    neuron.add_argument("--threshold", type=float, help="firing threshold > 0 (default 1.0)")
    neuron.add_argument("--surrogate", choices=SURROGATES, help="surrogate gradient (default fast_sigmoid)")
    neuron.add_argument("--slope", type=float, help="surrogate slope (default 25)")
    neuron.add_argument("--reset", choices=RESET_MECHANISMS, help="reset mechanism (default subtract)")
    neuron.add_argument("--learn-beta", action="store_true", help="train beta")
    neuron.add_argument("--learn-threshold", action="store_true", help="train the threshold")
    neuron.add_argument("--per-channel-beta", action="store_true", help="one beta per channel/unit")
    neuron.add_argument("--readout", choices=("membrane", "spike_count"), help="logits (default membrane)")
    neuron.add_argument("--dropout", type=float, help="dropout before deeper dense layers (default 0)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="set any field of the model's config, e.g. --model-option features=48 for an SSM "
                             "(repeatable; lists as 8,4,2)")

    optim = parser.add_argument_group("optimisation")
    defaults = TrainConfig()
    optim.add_argument("--epochs", type=int, default=defaults.epochs, help=f"(default {defaults.epochs})")
    optim.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"(default {defaults.batch_size})")
    optim.add_argument("--optimizer", choices=("adam", "adamw"), default=defaults.optimizer)
    optim.add_argument("--lr", type=float, default=defaults.lr, help=f"learning rate (default {defaults.lr})")
    optim.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    optim.add_argument("--schedule", choices=("cosine", "onecycle", "constant"), default=defaults.schedule)
    optim.add_argument("--grad-clip", type=float, default=defaults.grad_clip, help="max grad norm, 0 = off")
    optim.add_argument("--loss", choices=LOSSES, default=defaults.loss)
    optim.add_argument("--time-shift", type=int, default=defaults.time_shift,
                       help=f"augmentation: random shift by up to N frames (default {defaults.time_shift}, 0 = off)")
    optim.add_argument("--time-mask", type=int, default=defaults.time_mask,
                       help=f"augmentation: mask up to N consecutive frames (default {defaults.time_mask}, 0 = off)")
    optim.add_argument("--freq-mask", type=int, default=defaults.freq_mask,
                       help=f"augmentation: mask up to N consecutive coefficients (default {defaults.freq_mask})")
    optim.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0 = off)")
    optim.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and dropout")
    optim.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    optim.add_argument("--tf32", action="store_true",
                       help="allow TF32 on CUDA: faster, but spikes then differ from float32 (default off)")
    optim.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    optim.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    return parser


MODEL_OPTIONS = {"num_steps": "num_steps", "beta": "beta", "threshold": "threshold", "surrogate": "surrogate",
                 "slope": "surrogate_slope", "reset": "reset_mechanism", "readout": "readout", "dropout": "dropout"}
MODEL_FLAGS = {"learn_beta": "learn_beta", "learn_threshold": "learn_threshold",
               "per_channel_beta": "per_channel_beta"}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    overrides = {field: getattr(args, option) for option, field in MODEL_OPTIONS.items()
                 if getattr(args, option) is not None}
    overrides.update({field: True for option, field in MODEL_FLAGS.items() if getattr(args, option)})
    from scnn.models import model_config

    family, config = model_config(args.model)
    if family != "spec_net" or not config.spiking:
        overrides = {k: v for k, v in overrides.items() if k == "dropout"}  # neuron options do not apply
    for key, value in parse_key_values(args.model_option, "--model-option").items():
        overrides[key] = [int(v) for v in value.split(",")] if isinstance(value, str) and "," in value else value
    try:
        model_config(args.model, **overrides)
    except (TypeError, ValueError) as error:
        sys.exit(f"error: --model {args.model}: {error}")
    train_config = TrainConfig(
        model=args.model, model_overrides=overrides, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        grad_clip=args.grad_clip, loss=args.loss, seed=args.seed, patience=args.patience, threads=args.threads,
        device=args.device, tf32=args.tf32, time_shift=args.time_shift, time_mask=args.time_mask,
        freq_mask=args.freq_mask,
    )
    try:
        return train(train_config, data_config_from(args), args.out, resume=args.resume,
                     progress=not args.no_progress)
    except (FileNotFoundError, ValueError, TypeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
