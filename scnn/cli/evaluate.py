"""Evaluate a trained checkpoint on the test split; the model is rebuilt from the checkpoint alone.

Example:
    scnn evaluate --checkpoint runs/model_b/best.pt --data-dir ../shared/data/fsdd/recordings --out runs/model_b/eval
"""

from __future__ import annotations

import argparse

from scnn.cli.common import any_int, positive_float

# Options that mean something only with another: given without it, an error (never silently unused).
# dest -> (its default, the dest it needs, how the error names both)
NEEDS = {"snr": ([20.0, 10.0, 5.0, 0.0], "noise", "--snr", "--noise KINDS"),
         "noise_seed": (0, "noise", "--noise-seed", "--noise KINDS"),
         "noise_on": ("test", "noise", "--noise-on", "--noise KINDS"),
         "warp_step": (0.02, "warp_average", "--warp-step", "--warp-average SPREAD")}


def _snrs(text: str) -> list[float]:
    """--snr: comma-separated finite numbers of dB."""
    from scnn.train.noise_eval import parse_snrs

    try:
        return parse_snrs(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--snr: ")) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scnn.data.splits import SPLITS

    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt written by scnn train")
    parser.add_argument("--data-dir", help="audio folder (default: the one recorded in the checkpoint's config, "
                        "else $SCNN_DATA_DIR / the user cache)")
    parser.add_argument("--split", choices=SPLITS, help="evaluate on this split's test part (default: the split it "
                        "was trained with)")
    parser.add_argument("--holdout-speaker", help="test speaker for --split speaker")
    parser.add_argument("--out", default="runs/evaluate", help="output folder for results.json and the figure")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--no-progress", action="store_true")
    noise = parser.add_argument_group("noise (scnn.train.noise_eval: accuracy against SNR, table 'noise')")
    noise.add_argument("--noise", metavar="KINDS", help="also evaluate with these noises mixed into the test "
                       "recordings: comma-separated white, pink, brown, babble (other test recordings)")
    noise.add_argument("--snr", metavar="DB", type=_snrs, help="SNRs in dB for --noise (default 20,10,5,0)")
    noise.add_argument("--noise-seed", type=any_int, help="seed of the noise (default 0)")
    noise.add_argument("--noise-on", choices=("test", "val"),
                       help="recordings the noise goes into: the test split (default) or the validation split, "
                            "to choose a recipe without the test set (writes noise_val.*)")
    warp = parser.add_argument_group("test-time warp averaging (scnn.train.warp_eval)")
    warp.add_argument("--warp-average", metavar="SPREAD", type=float,
                      help="also evaluate validation and test with the class probabilities averaged over frequency "
                           "warps 1-SPREAD..1+SPREAD (VTLP factors; 0.1 is Jaitly & Hinton's range): "
                           "writes warp_average.json")
    warp.add_argument("--warp-step", metavar="STEP", type=positive_float,
                      help="step of the warp grid for --warp-average (default 0.02: 11 factors for 0.1)")


def run(args: argparse.Namespace) -> dict:
    from scnn.cli.common import check_checkpoint
    from scnn.train import evaluate_checkpoint

    # Every option is checked before the plain evaluation runs.
    for name, (default, needed, option, needed_option) in NEEDS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        elif getattr(args, needed) is None:
            raise ValueError(f"{option} applies only with {needed_option}; add {needed_option.split()[0]} "
                             f"or leave {option} out")
    if args.noise:
        from scnn.train.noise_eval import parse_noise_kinds

        args.noise = parse_noise_kinds(args.noise)
    if args.warp_average is not None:
        from scnn.train.warp_eval import warp_factors

        warp_factors(args.warp_average, args.warp_step)
    check_checkpoint(args.checkpoint)
    overrides = {"data_dir": args.data_dir, "split": args.split, "holdout_speaker": args.holdout_speaker}
    results = evaluate_checkpoint(args.checkpoint, args.out, {k: v for k, v in overrides.items() if v is not None},
                                  device=args.device, progress=not args.no_progress)
    print(f"test accuracy {results['test_accuracy']:.4f} on {results['num_test']} recordings; "
          f"results in {args.out}/results.json")
    if args.noise:
        from scnn.train.noise_eval import noise_evaluation

        rows = noise_evaluation(args.checkpoint, args.out, args.noise, args.snr, seed=args.noise_seed,
                                data_overrides=overrides, device=args.device, progress=not args.no_progress,
                                part=args.noise_on)
        results["noise"] = rows
        stem = "noise" if args.noise_on == "test" else "noise_val"
        print(f"accuracy against SNR in {args.out}/{stem}.csv and {stem}.png")
    if args.warp_average is not None:
        from scnn.train.warp_eval import warp_average_evaluation

        warped = warp_average_evaluation(args.checkpoint, args.out, args.warp_average, args.warp_step,
                                         data_overrides=overrides, device=args.device)
        results["warp_average"] = warped
        for part, row in warped["parts"].items():
            print(f"{part}: accuracy {row['plain_accuracy']:.4f} unwarped (torch front end), "
                  f"{row['warp_average_accuracy']:.4f} averaged over {len(warped['factors'])} warps")
    return results
