"""Adapt a trained checkpoint to new voices without labels: self-training on its own confident predictions.

The model labels the recordings of the speakers it is to adapt to (the test split's, or with --on val the
validation split's, to choose a recipe), the most confident --keep share joins the training set with those
labels, and the model trains --epochs more epochs on both (scnn.train.adapt). Writes OUT/adapt.json
(accuracy before and after), OUT/adapted.pt (scnn evaluate reads it) and OUT/predictions.csv.

Example (the recipe chosen on FSDD's leave-one-speaker-out validation: balanced labels, two rounds):
    scnn adapt --checkpoint runs/loso_b/fold1/best.pt --data-dir ../shared/data/fsdd/recordings \
        --balance --rounds 2 --out runs/loso_b/fold1/adapt
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scnn.cli.common import _number, nonnegative_float, positive_int

    share = _number(float, 0.0, exclusive=True, maximum=1.0)

    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt written by scnn train or scnn cv")
    parser.add_argument("--data-dir", help="audio folder (default: the one recorded in the checkpoint's config)")
    parser.add_argument("--on", choices=("test", "val"), default="test",
                        help="whose recordings to adapt to and score: the test split (default) or the validation split")
    parser.add_argument("--keep", type=share, default=0.8,
                        help="share of the recordings, most confident first, that join training (default 0.8)")
    parser.add_argument("--epochs", type=positive_int, default=10, help="epochs of the adaptation (default 10)")
    parser.add_argument("--lr-factor", type=share, default=0.3,
                        help="learning rate of the adaptation, as a share of the run's (default 0.3)")
    parser.add_argument("--warp-average", metavar="SPREAD", type=nonnegative_float, default=0.1,
                        help="pseudo-labels from probabilities averaged over frequency warps 1 +- SPREAD "
                             "(default 0.1; 0: the plain prediction)")
    parser.add_argument("--balance", action="store_true",
                        help="rebalance the pseudo-labels to the training set's class frequencies (assumes the new "
                             "speakers' words follow them)")
    parser.add_argument("--rounds", type=positive_int, default=1,
                        help="rounds of labelling and training, each from the original checkpoint (default 1)")
    parser.add_argument("--out", default="runs/adapt", help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> dict:
    from scnn.cli.common import check_checkpoint, set_threads
    from scnn.train.adapt import self_train

    if args.warp_average:  # its range first, as self_train checks it before it loads anything
        from scnn.train.warp_eval import warp_factors

        warp_factors(args.warp_average)
    check_checkpoint(args.checkpoint)
    set_threads(args.threads)
    results = self_train(args.checkpoint, args.out, part=args.on, keep=args.keep, epochs=args.epochs,
                         lr_factor=args.lr_factor, warp_spread=args.warp_average,
                         balance=args.balance, rounds=args.rounds,
                         data_overrides={"data_dir": args.data_dir}, device=args.device, progress=not args.no_progress)
    before, after = results["accuracy_before"], results["accuracy_after"]
    print(f"{args.on}: accuracy {before['plain']:.4f} -> {after['plain']:.4f} (warp-averaged {before['warp_average']:.4f} "
          f"-> {after['warp_average']:.4f}); {results['num_pseudo_labels']} of {results['num']} recordings pseudo-labelled; "
          f"results in {args.out}/adapt.json")
    return results
