"""Train a model and evaluate its best-validation checkpoint on the test split.

The run config is built in layers, each over the one before: the defaults, --config FILE
(YAML or TOML: sections model, data, train; see configs/), the flags below, then KEY=VALUE
overrides. It is printed at the start and saved in every checkpoint and in results.json.

Examples:
    scnn train --config configs/fsdd_model_b.yaml --data-dir ../shared/data/fsdd/recordings
    scnn train --config configs/fsdd_model_b.yaml train.epochs=40 model.beta=0.7 --out runs/b_beta07
    scnn train --model model_a --num-steps 10 --epochs 30 --seed 0 --out runs/model_a   # flags only
    scnn train --config configs/gsc35_cnn.yaml --ddp 2 ...                # data-parallel, 2 local processes
    torchrun --nproc_per_node 2 -m scnn train --config configs/gsc35_cnn.yaml ...   # the same, by torchrun
"""

from __future__ import annotations

import argparse

from scnn.cli.common import (add_data_arguments, data_updates, fraction, key_values, nonnegative_float,
                             nonnegative_int, positive_float, positive_int, any_int)

# flag -> model option (applied to spiking spec nets only; other families have no neurons)
NEURON_FLAGS = {"num_steps": "num_steps", "beta": "beta", "threshold": "threshold", "surrogate": "surrogate",
                "slope": "surrogate_slope", "reset": "reset_mechanism", "readout": "readout", "neuron": "neuron"}
NEURON_SWITCHES = {"learn_beta": "learn_beta", "learn_threshold": "learn_threshold",
                   "per_channel_beta": "per_channel_beta"}
TRAIN_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "grad_clip", "loss",
               "time_shift", "time_mask", "freq_mask", "patience", "seed", "device", "threads",
               "noise_prob", "noise_colours", "noise_dir", "gain_db", "speed", "mixup", "vtlp", "eq_db",
               "event_channel_jitter", "event_time_jitter", "event_drop")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scnn.neurons import RESET_MECHANISMS, SURROGATES, list_neurons
    from scnn.train.config import OPTIMIZERS, SCHEDULES
    from scnn.train.losses import LOSSES

    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. train.epochs=40 model.beta=0.7 data.split=speaker")
    parser.add_argument("--config", metavar="FILE", help="run config (YAML or TOML), e.g. configs/fsdd_model_b.yaml")
    parser.add_argument("--model", help="preset (model_a, model_b, control_cnn, ssm_*) or a spec string such as "
                        "6C3-P2-64FC-10FC (default model_b)")
    parser.add_argument("--out", default="runs/train", help="output folder (checkpoints, metrics, results, figures)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (same settings, or refused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in OUT; its files are removed once the data are ready, "
                             "before the first epoch writes")
    parser.add_argument("--extend-epochs", action="store_true",
                        help="with --resume: allow more --epochs than planned; the learning-rate schedule continues "
                             "from where it stands to the new last epoch (no restart), recorded in results.json")
    parser.add_argument("--print-config", action="store_true", help="print the run config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    add_data_arguments(parser, defaults=False)

    neuron = parser.add_argument_group("spiking neurons (spiking spec nets only; ignored by the control CNN and SSMs)")
    neuron.add_argument("--neuron", choices=list_neurons(), help="neuron model (default leaky)")
    neuron.add_argument("--num-steps", type=positive_int, help="time steps T (default 10)")
    neuron.add_argument("--beta", type=_beta, help="membrane decay in [0, 1] (default 0.5)")
    neuron.add_argument("--threshold", type=positive_float, help="firing threshold > 0 (default 1.0)")
    neuron.add_argument("--surrogate", choices=SURROGATES, help="surrogate gradient (default fast_sigmoid)")
    neuron.add_argument("--slope", type=positive_float, help="surrogate slope (default 25)")
    neuron.add_argument("--reset", choices=RESET_MECHANISMS, help="reset mechanism (default subtract)")
    neuron.add_argument("--learn-beta", action="store_true", help="train beta")
    neuron.add_argument("--learn-threshold", action="store_true", help="train the threshold")
    neuron.add_argument("--per-channel-beta", action="store_true", help="one beta per channel/unit")
    neuron.add_argument("--readout", choices=("membrane", "spike_count"), help="logits (default membrane)")
    parser.add_argument("--dropout", type=fraction, help="dropout before deeper dense layers (default 0)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="set any field of the model's config, e.g. --model-option features=48 for an SSM "
                             "(repeatable; lists as 8,4,2)")

    optim = parser.add_argument_group("optimisation (defaults: scnn.train.TrainConfig)")
    optim.add_argument("--epochs", type=positive_int, help="epochs (default 30)")
    optim.add_argument("--batch-size", type=positive_int, help="(default 32)")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, help="(default adamw)")
    optim.add_argument("--lr", type=nonnegative_float, help="learning rate (default 2e-3)")
    optim.add_argument("--weight-decay", type=nonnegative_float, help="(default 1e-4)")
    optim.add_argument("--schedule", choices=SCHEDULES, help="per-batch learning-rate schedule (default cosine)")
    optim.add_argument("--grad-clip", type=nonnegative_float, help="max grad norm, 0 = off (default 1)")
    optim.add_argument("--loss", choices=LOSSES, help="(default ce_membrane)")
    optim.add_argument("--time-shift", type=nonnegative_int,
                       help="augmentation: random shift by up to N frames (default 3, 0 = off)")
    optim.add_argument("--time-mask", type=nonnegative_int,
                       help="augmentation: mask up to N consecutive frames (default 4, 0 = off)")
    optim.add_argument("--freq-mask", type=nonnegative_int,
                       help="augmentation: mask up to N consecutive coefficients (default 4, 0 = off)")
    optim.add_argument("--patience", type=nonnegative_int, help="early stopping patience in epochs (0 = off)")
    optim.add_argument("--seed", type=any_int, help="seed of weights, shuffling, augmentation and dropout (default 0)")
    optim.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    optim.add_argument("--tf32", action="store_true",
                       help="allow TF32 on CUDA: faster, but spikes then differ from float32 (default off)")
    optim.add_argument("--threads", type=nonnegative_int, help="torch CPU threads (0 = torch default)")
    optim.add_argument("--ddp", type=positive_int, metavar="N",
                       help="data-parallel over N local processes (gloo on CPU, nccl on GPUs), the same results as "
                            "one process with the same --batch-size (the global batch); each process gets --threads "
                            "threads, or its share of the cores. Under torchrun, leave it out (scnn.train.distributed)")

    robust = parser.add_argument_group("robust training: waveform augmentation on the fly (docs/robustness.md)")
    robust.add_argument("--noise-prob", type=_probability, help="share of training samples given noise (0 = off)")
    robust.add_argument("--noise-snr", type=_snr_range, metavar="MIN,MAX",
                        help="SNR range of that noise in dB (a negative MIN as --noise-snr=-5,25)")
    robust.add_argument("--noise-colours", metavar="LIST", help="noise colours, e.g. white,pink,brown")
    robust.add_argument("--noise-dir", metavar="DIR", help="a folder of noise recordings (*.wav) drawn beside them")
    robust.add_argument("--gain-db", type=nonnegative_float, help="random gain within +-DB (0 = off)")
    robust.add_argument("--speed", type=_probability, help="random speed factor within 1 +- F (0 = off)")
    robust.add_argument("--mixup", type=nonnegative_float, help="mixup with Beta(ALPHA, ALPHA) (0 = off)")
    robust.add_argument("--vtlp", type=_probability, metavar="F",
                        help="vocal-tract-length perturbation: spectrum warped by a factor within 1 +- F (0 = off; 0.1 "
                             "as Jaitly & Hinton); per-utterance CMN/CMVN is data.utterance_norm=mean|mean_var")
    robust.add_argument("--eq-db", type=nonnegative_float, metavar="DB",
                        help="random channel response: a smooth gain curve over frequency within about +-DB (0 = off)")
    events = parser.add_argument_group("event augmentation of spike datasets (shd, ssc): each training batch, "
                                       "each epoch, before binning")
    events.add_argument("--event-channel-jitter", type=nonnegative_float, metavar="CHANNELS",
                        help="shift each spike's channel by N(0, CHANNELS), rounded (0 = off)")
    events.add_argument("--event-time-jitter", type=nonnegative_float, metavar="SECONDS",
                        help="shift each spike's time by N(0, SECONDS) (0 = off)")
    events.add_argument("--event-drop", type=_probability, metavar="P", help="drop each spike with probability P (0 = off)")


def _probability(text: str) -> float:
    value = nonnegative_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _snr_range(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in dB, e.g. -5,25; got {text!r}") from None
    if low > high:
        raise argparse.ArgumentTypeError(f"MIN must not exceed MAX, got {text}")
    return low, high


def _beta(text: str) -> float:
    value = nonnegative_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def flag_updates(args: argparse.Namespace, model_name: str) -> dict:
    """The run-config layer the flags make (only the flags given)."""
    from scnn.models import model_config

    model = {}
    if args.model is not None:
        model["name"] = args.model
    neuron = {field: getattr(args, flag) for flag, field in NEURON_FLAGS.items() if getattr(args, flag) is not None}
    neuron.update({field: True for flag, field in NEURON_SWITCHES.items() if getattr(args, flag)})
    family, config = model_config(model_name)
    if neuron and (family != "spec_net" or not config.spiking):
        print(f"note: {model_name} has no spiking neurons; ignoring {', '.join(sorted(neuron))}")
        neuron = {}
    model.update(neuron)
    if args.dropout is not None:
        model["dropout"] = args.dropout
    options = key_values(args.model_option, "--model-option")
    if options:  # named as given here; load_run_config checks the whole model section again
        from scnn.train.run_config import check_model_options

        check_model_options({"name": model_name, **options}, "--model-option {key}")
    model.update(options)
    train = {flag: getattr(args, flag) for flag in TRAIN_FLAGS if getattr(args, flag) is not None}
    if args.tf32:
        train["tf32"] = True
    if args.noise_snr is not None:
        train["noise_snr_min"], train["noise_snr_max"] = args.noise_snr
    return {"model": model, "data": data_updates(args), "train": train}


def run_config_from(args: argparse.Namespace):
    """The run config of a ``scnn train`` command line."""
    from scnn.train.run_config import load_run_config, read_config_file

    file_model = (read_config_file(args.config).get("model") or {}) if args.config else {}
    # the model the layers end with: a model.name=... override over --model over the file's
    named = [item.split("=", 1)[1].strip() for item in args.overrides if item.split("=", 1)[0].strip() == "model.name"]
    model_name = named[-1] if named else args.model or file_model.get("name") or "model_b"
    return load_run_config(args.config, args.overrides, flag_updates(args, model_name))


def run(args: argparse.Namespace) -> dict:
    config = run_config_from(args)
    if args.print_config:
        print(config.dump(), end="")
        return config.to_dict()
    if args.ddp and args.ddp > 1:
        import json
        from pathlib import Path

        from scnn.train.distributed import environment_world_size, launch_local

        if environment_world_size() > 1:
            raise ValueError("--ddp starts its own processes: leave it out under torchrun (WORLD_SIZE is set)")
        launch_local(args.ddp, _train_process, config, args)
        results_file = Path(args.out) / "results.json"
        return json.loads(results_file.read_text()) if results_file.is_file() else {"interrupted": True}
    return _train_process(config, args)


def _train_process(config, args: argparse.Namespace) -> dict:
    """One process of the run: joins the process group when launched by torchrun or --ddp, then trains."""
    from scnn.train import train
    from scnn.train.distributed import init_from_environment
    from scnn.train.config import resolve_device

    init_from_environment(str(resolve_device(config.train.device)), config.train.threads)
    return train(config.train, config.data, args.out, resume=args.resume, progress=not args.no_progress,
                 overwrite=args.overwrite, extend_epochs=args.extend_epochs)


