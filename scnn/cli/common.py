"""Argument types and option groups shared by the subcommands.

Every option is checked where it is parsed: a bad value ends in one line naming the option
and what it allows (argparse's own error), before any work starts.
"""

from __future__ import annotations

import argparse


def _number(kind, minimum=None, exclusive=False, maximum=None):
    """An argparse type: ``kind`` (int or float) within the bounds, named in the error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if exclusive else '>='} {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} value"
    return parse


positive_int = _number(int, 1)
nonnegative_int = _number(int, 0)
positive_float = _number(float, 0.0, exclusive=True)
nonnegative_float = _number(float, 0.0)
any_int = _number(int)


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    value = _number(float, 0.0)(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be < 1, got {text}")
    return value


# The first bytes of torch.save's files: a zip archive (PyTorch >= 1.6), or the legacy format's pickled magic number.
_CHECKPOINT_SIGNATURES = (b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")


def check_checkpoint(path, what: str = "checkpoint") -> None:
    """A user error in one line unless ``path`` is a file that torch.save wrote (read: its first bytes only);
    run before any work, where a command takes a checkpoint. What torch.load finds wrong inside such a file
    is :func:`scnn.io.load_checkpoint`'s to say."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist" if not path.exists() else
                                f"{what} {path} is not a file (give best.pt or last.pt of a run)")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head.startswith(_CHECKPOINT_SIGNATURES):
        kind = "an empty file" if not head else "not a file written by torch.save"
        raise ValueError(f"{what} {path} cannot be loaded: {kind} (give best.pt or last.pt written by scnn train)")


def parse_value(text: str):
    """A command-line value in YAML's syntax: 40 -> int, 0.7 -> float, true -> bool, null -> None,
    8,4,2 -> a list of ints; anything else stays a string."""
    import yaml

    if "," in text and all(part.strip().lstrip("-").isdigit() for part in text.split(",")):
        return [int(part) for part in text.split(",")]
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str, list, dict)) or value is None else text


def key_values(pairs: list[str], option: str) -> dict:
    """``["top_db=20", "n_mfcc=20"]`` -> ``{"top_db": 20, "n_mfcc": 20}``; a pair without ``=`` is an error."""
    result = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects KEY=VALUE, got {pair!r}")
        result[key.strip()] = parse_value(text)
    return result


def feature_pair(text: str) -> str:
    """An argparse type for ``--feature KEY=VALUE``: KEY a FeatureConfig field, VALUE of its type (the ranges
    and combinations are checked with the preset, once the run config is built). Returns ``text``."""
    from scnn.features.mfcc import check_feature_overrides

    try:
        check_feature_overrides(key_values([text], "--feature"), "{key}")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("--feature expects", "expected")) from None
    return text


def add_data_arguments(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The data and feature options (DataConfig). ``defaults=False``: every default None, so
    only the options given on the command line override a config file."""
    from scnn.data.registry import list_datasets
    from scnn.data.splits import SPLITS
    from scnn.features.mfcc import FEATURE_PRESETS

    def default(value):
        return value if defaults else None

    group = parser.add_argument_group("data and features")
    group.add_argument("--data-dir", help="folder of recordings (default: $SCNN_DATA_DIR, else the user cache, "
                       "FSDD downloaded there if absent)")
    group.add_argument("--dataset", "--layout", dest="dataset", choices=list_datasets(), default=default("fsdd"),
                       help="fsdd: {digit}_{speaker}_{index}.wav; folders: root/<label>/*.wav (default: fsdd)")
    group.add_argument("--split", choices=SPLITS, default=default("official"),
                       help="official: the dataset's own test set; speaker: hold out --holdout-speaker; group: a "
                            "seeded share of the speakers; random: stratified")
    group.add_argument("--holdout-speaker", default=default("theo"),
                       help="test speaker(s) for --split speaker: one name, or several as a,b")
    group.add_argument("--val-speakers", metavar="NAMES", help="validation speakers a,b (never trained on)")
    group.add_argument("--num-val-speakers", type=nonnegative_int,
                       help="N training speakers, seeded, become validation (never trained on)")
    group.add_argument("--group-pattern", metavar="REGEX",
                       help="speaker from the file name: a regular expression with (?P<group>...)")
    group.add_argument("--group-manifest", metavar="CSV", help="speaker from a CSV with columns path,speaker")
    group.add_argument("--label-pattern", metavar="REGEX",
                       help="dataset recordings: a regular expression with (?P<label>...) and optional "
                            "(?P<speaker>...)")
    group.add_argument("--manifest", metavar="CSV", help="dataset recordings: a CSV with columns path,label[,speaker]")
    group.add_argument("--test-fraction", type=fraction, default=default(0.1), help="test share for --split random")
    group.add_argument("--val-fraction", type=fraction, default=default(0.1),
                       help="share of train held out for validation and model selection (default 0.1)")
    group.add_argument("--split-seed", type=any_int, default=default(0), help="seed of the random splits")
    group.add_argument("--features", choices=sorted(FEATURE_PRESETS), default=default("default"),
                       help="feature preset (default: default; 'paper' = the reference code's MFCCs)")
    group.add_argument("--feature", action="append", default=[], metavar="KEY=VALUE", type=feature_pair,
                       help="override one feature parameter, e.g. --feature top_db=20 (repeatable)")
    group.add_argument("--cache-dir", help="feature cache folder (default: <user cache>/scnn/features)")
    group.add_argument("--skip-bad", action="store_true", default=None,
                       help="leave out (and list) unreadable, empty, non-audio or misnamed files instead of stopping")
    group.add_argument("--train-per-class", type=nonnegative_int, default=default(0),
                       help="use only the first N training recordings per class (0 = all; for quick runs)")
    group.add_argument("--no-download", action="store_true", default=None,
                       help="never download FSDD; fail if it is not found")


DATA_FLAGS = {"data_dir": "data_dir", "dataset": "dataset", "split": "split", "holdout_speaker": "holdout_speaker",
              "test_fraction": "test_fraction", "val_fraction": "val_fraction", "split_seed": "split_seed",
              "features": "feature_preset", "cache_dir": "cache_dir", "skip_bad": "skip_bad",
              "train_per_class": "train_per_class", "val_speakers": "val_speakers",
              "num_val_speakers": "num_val_speakers", "group_pattern": "group_pattern",
              "group_manifest": "group_manifest", "label_pattern": "label_pattern", "manifest": "manifest"}


def data_updates(args: argparse.Namespace) -> dict:
    """The DataConfig fields the data options set (options left at None are not included)."""
    updates = {field: getattr(args, flag) for flag, field in DATA_FLAGS.items() if getattr(args, flag) is not None}
    if args.feature:
        updates["feature_overrides"] = key_values(args.feature, "--feature")
    if args.no_download:
        updates["download"] = False
    return updates


def data_config_from(args: argparse.Namespace):
    """A DataConfig from the data options (parsed with defaults)."""
    from scnn.data.prepare import DataConfig

    return DataConfig(**data_updates(args))


def set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_base_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE and KEY=VALUE overrides: the run every point or trial starts from."""
    parser.add_argument("--config", metavar="FILE",
                        help="base run config (YAML or TOML, e.g. configs/fsdd_model_b.yaml); flags override it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of the base run config, e.g. --set train.lr=1e-3 (repeatable)")


def base_run_config(args: argparse.Namespace, model: dict, train: dict):
    """The base run config of a sweep or search: defaults, --config, the given flags, then --set."""
    from scnn.train.run_config import load_run_config

    updates = {"model": {k: v for k, v in model.items() if v is not None},
               "data": data_updates(args), "train": {k: v for k, v in train.items() if v is not None}}
    return load_run_config(args.config, args.overrides, updates)
