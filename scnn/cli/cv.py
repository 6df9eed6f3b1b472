"""Cross-validation by speaker: k-fold (--folds K) or leave-one-speaker-out (the default).

Each fold is a normal training run folder OUT/foldN whose test split is the fold's speakers;
folds run one after another. The run config is built as for `scnn train` (--config FILE, the
same flags, KEY=VALUE overrides); data.num_val_speakers=N makes each fold's validation N
training speakers, rotating from fold to fold (the speakers that follow the fold's test speakers: in
leave-one-speaker-out each speaker validates once), so that model selection never sees a training voice.
--parallel N trains N folds at once (worker processes; per-fold folders and results unchanged).
--refit trains each fold once more on its validation speakers too, for the same epochs, keeping the last
epoch (OUT/foldN/refit): choose a recipe on the validated runs' validation accuracy, report the refits.
--refit with --resume adds the refits to a CV that ran without them.
A killed CV continues with --resume (finished folds are read back, the interrupted fold
resumes from its last.pt); other settings are refused, naming each difference. Writes
OUT/cv_summary.json, OUT/cv.csv (+ cv.json, cv.md) and OUT/cv_accuracy.png.

Examples:
    scnn cv --config configs/fsdd_model_b.yaml data.num_val_speakers=1 --threads 1 --out runs/cv_b
    scnn cv --config configs/fsdd_model_b.yaml --folds 3 train.epochs=10 --out runs/cv3_b --resume
    scnn cv --config configs/fsdd_model_b.yaml data.num_val_speakers=1 --parallel 2 --threads 1 --out runs/cv_b
"""

from __future__ import annotations

import argparse

from scnn.cli import train as train_command
from scnn.cli.common import any_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_command.add_arguments(parser)
    parser.set_defaults(out="runs/cv")
    cv = parser.add_argument_group("cross-validation")
    cv.add_argument("--folds", type=positive_int,
                    help="k-fold by speaker with K folds (default: leave one speaker out, one fold per speaker)")
    cv.add_argument("--fold-seed", type=any_int, default=0, help="seed of the shuffle of speakers into folds")
    cv.add_argument("--parallel", type=positive_int, default=1, metavar="N",
                    help="train N folds at once in worker processes, each with --threads torch threads (default: "
                         "CPU cores // N); the results are those of one fold after another (default 1)")
    cv.add_argument("--refit", action="store_true",
                    help="train each fold again on every speaker but its test speakers (its validation speakers "
                         "too) for the same epochs, keeping the last epoch, in OUT/foldN/refit; the summary reports "
                         "both (choose recipes on the validated runs' validation accuracy)")


def run(args: argparse.Namespace) -> dict:
    from scnn.train.cv import cross_validate

    if args.extend_epochs:
        raise ValueError("--extend-epochs does not apply to scnn cv; start a new cross-validation instead")
    config = train_command.run_config_from(args)
    if args.print_config:
        print(config.dump(), end="")
        return config.to_dict()
    return cross_validate(config, args.out, folds=args.folds, fold_seed=args.fold_seed, resume=args.resume,
                          overwrite=args.overwrite, progress=not args.no_progress, parallel=args.parallel,
                          refit=args.refit)
