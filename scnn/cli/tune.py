"""Ray Tune search over beta, threshold and time steps (optionally lr, batch size, model), with ASHA.

Trials train on the training part and report validation accuracy, activation sparsity and
synaptic operations every epoch; the test split is used once, at the end, on the best
configuration retrained on the full training split. Examples:
    scnn tune --model model_b --search optuna --num-samples 32 --epochs 6 \
        --data-dir ../shared/data/fsdd/recordings --out runs/tune
    scnn tune --search optuna --multi-objective ...      # accuracy vs SynOps, Pareto front
    scnn tune --resume --out runs/tune ...                # continue an interrupted search
    scnn tune --address HEAD_IP:6379 ...                  # run on an existing Ray cluster
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

from scnn.cli.common import add_base_config_arguments, add_data_arguments, any_int, base_run_config, nonnegative_int, \
    positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from scnn.search.tune import SEARCH_ALGORITHMS

    add_base_config_arguments(parser)
    parser.add_argument("--model", help="preset to search (default: the config's, else model_b; ssm_* for the SSM)")
    parser.add_argument("--space", choices=("neuron", "ssm", "robust"), default="neuron",
                        help="search space (default neuron; robust: utterance normalisation, VTLP, noise, speed, mixup, "
                             "objective the validation accuracy, a speaker's own with data.val_speakers)")
    parser.add_argument("--search", choices=SEARCH_ALGORITHMS, default="optuna", help="search algorithm")
    parser.add_argument("--multi-objective", action="store_true",
                        help="maximise validation accuracy and minimise SynOps (Optuna NSGA-II, no ASHA)")
    parser.add_argument("--num-samples", type=positive_int, default=32, help="trials (default 32)")
    parser.add_argument("--epochs", type=positive_int, default=6, help="maximum epochs per trial (default 6)")
    parser.add_argument("--grace-period", type=positive_int, default=1, help="ASHA: epochs before a trial can stop")
    parser.add_argument("--cpus-per-trial", type=positive_int, default=1, help="CPUs (and torch threads) per trial")
    parser.add_argument("--tune-lr", action="store_true", help="also search the learning rate")
    parser.add_argument("--tune-batch-size", action="store_true", help="also search the batch size")
    parser.add_argument("--models", nargs="+", help="also search over these presets")
    parser.add_argument("--max-failures", type=nonnegative_int, default=2, help="retries of a failed trial (default 2)")
    parser.add_argument("--address", help="connect to an existing Ray cluster (HEAD_IP:PORT, or 'auto') instead of "
                        "starting a local one (default: $RAY_ADDRESS when set); OUT must then be a folder that every "
                        "node reaches at the same path (NFS), as trials write their checkpoints there")
    parser.add_argument("--resume", action="store_true", help="restore the interrupted search in OUT")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the search in OUT (search.json, ray/, results, retrained/)")
    parser.add_argument("--retrain-epochs", type=positive_int, help="epochs of the final retraining (default: --epochs)")
    parser.add_argument("--seed", type=any_int, default=0)
    parser.add_argument("--out", default="runs/tune", help="results folder (Ray's storage is OUT/ray)")
    add_data_arguments(parser, defaults=False)


def run(args: argparse.Namespace) -> dict:
    from scnn.search.tune import claim_search_folder, search_record
    from scnn.train.run import check_output_folder, folder_lock

    out = Path(args.out).resolve()
    config = base_run_config(args, {"name": args.model},
                             {"epochs": args.epochs, "seed": args.seed, "threads": args.cpus_per_trial})
    data_config, base = config.data, config.train
    settings = {key: getattr(args, key) for key in SEARCH_SETTINGS}
    settings["model"] = base.model
    check_output_folder(out, "--out")  # created and writable before the lock file goes in
    with folder_lock(out):
        claim_search_folder(out, search_record(settings, base, data_config), resume=args.resume,
                            overwrite=args.overwrite)
        return _search(args, out, base, data_config)


# The options that define a search (a resume must repeat them); CPUs per trial, the cluster address
# and failure retries change where and how it runs, not what it finds.
SEARCH_SETTINGS = ("space", "search", "multi_objective", "num_samples", "epochs", "grace_period", "tune_lr",
                   "tune_batch_size", "models", "seed", "retrain_epochs")


def _search(args: argparse.Namespace, out: Path, base, data_config) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from scnn.io import write_json
    from scnn.search.tune import (data_config_from_trial, make_search_algorithm, neuron_search_space, pareto_front,
                                  robust_search_space, ssm_search_space, train_config_from_trial, trainable)
    from scnn.train import prepare_data, train
    from scnn.viz.plots import plot_pareto
    from scnn.viz.tables import markdown_table

    # The robust space's trials may augment waveforms (they need the training recordings).
    data = prepare_data(data_config, progress=False, keep_waveforms=args.space == "robust")
    address = args.address or os.environ.get("RAY_ADDRESS")  # ray.init(num_cpus=...) fails if RAY_ADDRESS is set
    if address and address != "local":
        ray.init(address=address, log_to_driver=False)
        nodes = [node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]]
        print(f"connected to the Ray cluster at {address}: {len(nodes)} nodes ({', '.join(sorted(nodes))}), "
              f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs")
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    space = (ssm_search_space(args.search) if args.space == "ssm" else robust_search_space(args.search)
             if args.space == "robust" else
             neuron_search_space(args.search, args.tune_lr, args.tune_batch_size, args.models))
    runnable = tune.with_resources(tune.with_parameters(trainable, data=data, base=base, data_config=data_config),
                                   {"cpu": args.cpus_per_trial})
    storage, name = str(out / "ray"), "search"
    start = time.perf_counter()
    if args.resume and tune.Tuner.can_restore(f"{storage}/{name}"):
        tuner = tune.Tuner.restore(f"{storage}/{name}", trainable=runnable, resume_errored=True)
    else:
        single = not args.multi_objective
        tuner = tune.Tuner(
            runnable, param_space=space,
            tune_config=tune.TuneConfig(
                metric="val_accuracy" if single else None, mode="max" if single else None,
                search_alg=make_search_algorithm(args.search, args.seed, args.multi_objective),
                scheduler=ASHAScheduler(max_t=args.epochs, grace_period=args.grace_period) if single else None,
                num_samples=args.num_samples),
            run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=args.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    grid = tuner.fit()
    search_seconds = time.perf_counter() - start
    # Ray lists a restored experiment's results in no fixed order; sorting by trial id (its suffix is
    # the trial's creation index) keeps trials.json and the tie-break among equal trials stable.
    trials = sorted(({**result.config, **{k: result.metrics.get(k) for k in
                                          ("val_accuracy", "activation_sparsity", "synops", "epoch",
                                           "node_ip", "trial_id")},
                      "error": str(result.error) if result.error else ""} for result in grid),
                    key=lambda trial: str(trial["trial_id"]))
    finished = [t for t in trials if t["val_accuracy"] is not None and t["synops"] is not None]
    front = pareto_front(finished)
    ray.shutdown()
    if not finished:
        raise ValueError("no trial finished an epoch; see the errors in the trials")

    chosen = max(front if args.multi_objective else finished, key=lambda t: (t["val_accuracy"], -t["synops"]))
    retrain = train_config_from_trial(chosen, base)
    retrain = retrain.__class__(**{**retrain.__dict__, "epochs": args.retrain_epochs or args.epochs})
    full_train = data_config_from_trial(chosen, data_config.__class__(**{**data_config.__dict__, "val_fraction": 0.0}))
    # A resumed search retrains again: the folder's retrained run is replaced, not resumed.
    final = train(retrain, full_train, out / "retrained", progress=False, overwrite=True)

    columns = ["beta", "threshold", "num_steps", "val_accuracy", "activation_sparsity", "synops", "epoch"]
    write_json(out / "trials.json", trials)
    write_json(out / "pareto.json", front)
    (out / "pareto.md").write_text(markdown_table(front, columns))
    plot_pareto(finished, front, out / "pareto.png", title=f"{base.model}: {len(finished)} trials ({args.search})")
    summary = {
        "search": args.search, "multi_objective": args.multi_objective, "trials": len(trials),
        "finished_trials": len(finished), "search_wall_time_s": search_seconds,
        "trials_per_hour": 3600 * len(trials) / search_seconds, "epochs_per_trial_max": args.epochs,
        "chosen_config": {k: chosen[k] for k in space if k in chosen}, "chosen_val_accuracy": chosen["val_accuracy"],
        "retrained_on": "the full training split (validation merged back); test evaluated once, after the search",
        "retrained_test_accuracy": final["test_accuracy"], "retrained_config": retrain.__dict__,
        "pareto_front_size": len(front),
        "trials_per_node": dict(sorted(Counter(t["node_ip"] for t in trials if t["node_ip"]).items())),
    }
    write_json(out / "summary.json", summary)
    print(f"{len(trials)} trials in {search_seconds:.0f} s ({summary['trials_per_hour']:.0f} per hour); "
          f"chosen {summary['chosen_config']} (validation {chosen['val_accuracy']:.4f}); "
          f"retrained on the full training split: test {final['test_accuracy']:.4f}; results in {out}")
    return summary
