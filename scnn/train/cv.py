"""Cross-validation by group (speaker): k-fold and leave-one-speaker-out, fold after fold.

Each fold is a normal training run folder (``OUT/fold1``, ``OUT/fold2``, ...) written by
:func:`scnn.train.train`, with the fold's speakers as its test split (split "speaker" with
those speakers held out) and the run config's validation (speaker-disjoint with
``data.num_val_speakers``; ``data.val_speakers`` cannot name speakers that some fold tests).
So the run-folder checks, the lock and the resume of :mod:`scnn.train.run` apply to each fold.

The CV folder says what it holds (``OUT/cv_plan.json``: the run config, the protocol, the
folds' speakers) and is locked while a CV runs in it. A rerun with ``resume`` reads the folds
that finished back (their ``results.json`` and ``predictions.csv``), continues the fold that
was interrupted from its ``last.pt`` and runs the rest; a rerun with other settings is
refused with every differing field named. When all folds are done it writes the summary:
``cv_summary.json`` (per fold, mean ± std, per speaker, per class), the ``cv`` results table
(``cv.csv``, ``cv.json``, ``cv.md``, docs/results_formats.md) and ``cv_accuracy.png``.

With ``refit`` each fold is trained a second time (``OUT/foldN/refit``, a normal run folder) on
every speaker but its test speakers, its validation speakers included, for the same epochs, and
keeps the last epoch (there is no validation set left to choose one): the usual "choose on
validation, then refit on all the training data" protocol. The validated runs still say how well
a recipe does (the validation accuracies, their last epochs' in ``final_val_accuracy``); the
refits' test accuracies are reported beside the validated runs', never used to choose anything.
A finished or interrupted CV resumed with ``refit`` keeps its validated folds and adds the refits.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np

from scnn.data.prepare import prepare_data
from scnn.data.registry import dataset_listing
from scnn.data.splits import assign_groups, group_folds, parse_names, speakers_of
from scnn.io import write_json, write_text
from scnn.train.evaluate import evaluate, load_trained_model, write_predictions
from scnn.train.loop import notice, train
from scnn.train.run import (RESULTS_SCHEMA_VERSION, RunFolderError, SettingsMismatch, check_output_folder,
                            folder_lock, setting_differences)

PLAN = "cv_plan.json"
REFIT = "refit"  # a fold's refit run folder: OUT/foldN/refit
SUMMARY = "cv_summary.json"
# Settings that do not change a fold's result, left out when a rerun is compared with the plan.
UNCOMPARED = {"train": ("threads", "device"), "data": ("cache_dir", "download")}
# Paths compared as the places they resolve to, not as written.
FOLDER_SETTINGS = ("data_dir", "manifest", "group_manifest", "extra_train")


def fold_name(index: int) -> str:
    """The run folder of fold ``index`` (0-based): ``fold1``, ``fold2``, ..."""
    return f"fold{index + 1}"


def plan_cv(run_config, folds: int | None, fold_seed: int, refit: bool = False) -> dict:
    """What a CV runs: the protocol, the speakers and each fold's test speakers (nothing trained).

    folds: k for k-fold by speaker, None for leave-one-speaker-out. refit: each fold also
    trained on its validation speakers (see the module docstring). The speakers come from the
    dataset (or ``data.group_pattern`` / ``data.group_manifest``); ValueError where a fold
    would hold no speaker or validation speakers are named that a fold tests.
    """
    data = run_config.data
    recordings = assign_groups(dataset_listing(data).recordings, data.group_pattern, data.group_manifest)
    missing = [r for r in recordings if r.speaker is None]
    if missing:
        raise ValueError(f"cross-validation by speaker needs every recording's speaker; {len(missing)} have none "
                         f"(first: {missing[0].path}); give data.group_pattern or data.group_manifest")
    speakers = speakers_of(recordings)
    fold_speakers = group_folds(speakers, folds, fold_seed)
    named = parse_names(data.val_speakers)
    if named:
        raise ValueError(f"data.val_speakers ({', '.join(named)}) would be some fold's test speakers; in "
                         "cross-validation choose validation speakers per fold with data.num_val_speakers=N")
    return {"kind": "cv_plan", "protocol": "leave_one_speaker_out" if folds is None else "kfold",
            "num_folds": len(fold_speakers), "fold_seed": fold_seed, "speakers": speakers,
            "fold_speakers": fold_speakers,
            "fold_val_speakers": rotated_validation(fold_speakers, data.num_val_speakers),
            "refit": bool(refit), "run_config": run_config.to_dict()}


def rotated_validation(fold_speakers: list[list[str]], count: int) -> list[list[str]] | None:
    """Each fold's validation speakers: the ``count`` speakers that follow its test speakers in the
    folds' order, wrapping round (None where ``count`` is 0: validation carved from training).

    Leave-one-speaker-out over speakers s1..sn thus validates fold i on s(i+1) and every speaker
    validates exactly once, instead of one seeded choice that lands on the same speaker in most folds.
    ValueError where ``count`` leaves a fold no training speaker.
    """
    if not count:
        return None
    order = [speaker for fold in fold_speakers for speaker in fold]
    chosen = []
    for fold in fold_speakers:
        start = order.index(fold[-1]) + 1
        following = [order[(start + step) % len(order)] for step in range(len(order))]
        others = [speaker for speaker in following if speaker not in fold]
        if count >= len(others):
            raise ValueError(f"data.num_val_speakers={count} leaves no training speaker in the fold that tests "
                             f"{', '.join(fold)} ({len(others)} other speakers)")
        chosen.append(sorted(others[:count]))
    return chosen


def _comparable(plan: dict) -> dict:
    """The plan as a rerun compares it: fields an older version did not write at today's defaults (as a
    run's resume takes them), result-neutral settings left out, folders resolved."""
    from dataclasses import asdict

    from scnn.data.prepare import DataConfig
    from scnn.train.config import TrainConfig

    defaults = {"data": asdict(DataConfig()), "train": asdict(TrainConfig())}
    plan = {"refit": False, **plan,  # a plan written before refits existed had none
            "run_config": {section: {**defaults.get(section, {}), **values}
                           for section, values in plan["run_config"].items()}}
    for section, names in UNCOMPARED.items():
        for name in names:
            plan["run_config"].get(section, {}).pop(name, None)
    data = plan["run_config"].get("data", {})
    for name in FOLDER_SETTINGS:  # '../data' and '/home/me/data' are the same folder
        if data.get(name):
            data[name] = str(Path(data[name]).expanduser().resolve())
    return plan


def fold_run_config(run_config, speakers: list[str], val_speakers: list[str] | None = None):
    """The run config of the fold that tests ``speakers``: split "speaker" holding them out, validating
    on ``val_speakers`` where given (:func:`rotated_validation`)."""
    data = dataclasses.replace(run_config.data, split="speaker", holdout_speaker=",".join(speakers))
    if val_speakers:
        data = dataclasses.replace(data, val_speakers=",".join(val_speakers), num_val_speakers=0)
    return dataclasses.replace(run_config, data=data)


def refit_run_config(run_config, speakers: list[str]):
    """The run config of the refit of the fold that tests ``speakers``: trained on every other speaker
    (no validation set: val_fraction 0, no validation speakers), so it keeps its last epoch."""
    data = dataclasses.replace(run_config.data, split="speaker", holdout_speaker=",".join(speakers),
                               val_speakers="", num_val_speakers=0, val_fraction=0.0)
    return dataclasses.replace(run_config, data=data)


def fold_finished(fold_dir: Path, refit: bool) -> bool:
    """Whether the fold in ``fold_dir`` has its results and predictions (and its refit's, with ``refit``)."""
    folders = [fold_dir, fold_dir / REFIT] if refit else [fold_dir]
    return all((folder / "results.json").exists() and (folder / "predictions.csv").exists() for folder in folders)


def cross_validate(run_config, out_dir: str | Path, folds: int | None = None, fold_seed: int = 0,
                   resume: bool = False, overwrite: bool = False, progress: bool = True,
                   stop_after_folds: int | None = None, stop_after_epochs: int | None = None,
                   parallel: int = 1, refit: bool = False) -> dict:
    """Run (or continue) a cross-validation in ``out_dir``; returns the summary (see :func:`summarize`).

    run_config: a :class:`scnn.train.RunConfig` (its split is replaced per fold). folds: k, or
    None for leave-one-speaker-out. fold_seed: the shuffle of speakers into k folds.
    resume: continue the CV in ``out_dir`` (same settings, else SettingsMismatch naming each
    field); overwrite: remove its plan, summary and fold folders first. stop_after_folds,
    stop_after_epochs: a deliberate interruption (tests): return after that many folds of this
    call have run, the last of them stopped after ``stop_after_epochs`` epochs;
    ``{"interrupted_in_fold": n}`` is returned then. parallel: folds trained at once in that many worker
    processes (each with ``train.threads``, or the CPU count // parallel torch threads where that is 0);
    the fold folders and the summary are the same as one after another (the folds are independent and
    seeded), and a killed parallel CV resumes like a serial one. refit: train each fold again on its
    validation speakers too (the module docstring); the summary's ``refit`` part reports those.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1 worker process, got {parallel}")
    if parallel > 1 and (stop_after_folds is not None or stop_after_epochs is not None):
        raise ValueError("stop_after_folds / stop_after_epochs interrupt a serial cross-validation; use parallel=1")
    out_dir = check_output_folder(out_dir)
    with folder_lock(out_dir):
        if resume and overwrite:
            raise RunFolderError(f"resume and overwrite exclude each other: resume continues the cross-validation "
                                 f"in {out_dir}, overwrite replaces it")
        plan = plan_cv(run_config, folds, fold_seed, refit)
        plan_path = out_dir / PLAN
        if plan_path.exists() and not overwrite:
            import json

            old = json.loads(plan_path.read_text())
            if not resume:
                raise RunFolderError(f"{out_dir} already holds a cross-validation ({PLAN}); pass --resume to "
                                     "continue it, --overwrite to replace it, or choose another output folder")
            # a refit added on resume leaves the validated folds as they are: only the refits are trained
            adding_refit = plan["refit"] and not old.get("refit", False)
            differences = setting_differences(_comparable({**old, "refit": plan["refit"]} if adding_refit else old),
                                              _comparable(plan))
            if differences:
                raise SettingsMismatch(f"{out_dir} holds a cross-validation with other settings; it differs in: "
                                       + "; ".join(differences) + " (use --overwrite or another folder)")
        elif plan_path.exists():
            _remove_cv(out_dir)
        elif any(out_dir.glob("fold*/results.json")) or any(out_dir.glob("fold*/last.pt")):
            raise RunFolderError(f"{out_dir} holds fold folders but no {PLAN}; choose another output folder")
        write_json(plan_path, plan)
        validation = plan["fold_val_speakers"] or [None] * plan["num_folds"]
        if parallel > 1:
            _run_folds_in_parallel(run_config, plan, out_dir, parallel, progress)
        for index, speakers in enumerate(plan["fold_speakers"]):  # in parallel: only reads the finished folds
            if stop_after_folds is not None and index >= stop_after_folds:
                return {"interrupted_in_fold": index + 1}
            last = stop_after_folds is not None and index == stop_after_folds - 1
            outcome = run_fold(run_config, speakers, out_dir / fold_name(index), progress,
                               stop_after_epochs if last else None, validation[index], refit)
            if "interrupted_after_epoch" in outcome:
                return {"interrupted_in_fold": index + 1}
        summary = summarize(out_dir, plan)
    if progress:
        refit_line = (f"; refit {summary['refit']['mean_test_accuracy']:.4f} ± {summary['refit']['std_test_accuracy']:.4f}"
                      if summary["refit"] else "")
        print(f"cross-validation ({plan['num_folds']} folds): test accuracy {summary['mean_test_accuracy']:.4f} "
              f"± {summary['std_test_accuracy']:.4f}{refit_line}; results in {out_dir}")
    return summary


def _run_folds_in_parallel(run_config, plan: dict, out_dir: Path, parallel: int, progress: bool) -> None:
    """Train the unfinished folds of ``plan`` in ``parallel`` worker processes; the first failure is raised
    after the others stop.

    The workers are spawned, not forked: a fork of a process that has run torch's OpenMP threads aborts.
    So they know the datasets that importing scnn registers, not ones registered at run time in this
    process (those run with parallel=1)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = run_config.train.threads or max(1, (os.cpu_count() or 1) // parallel)
    config = dataclasses.replace(run_config, train=dataclasses.replace(run_config.train, threads=threads))
    validation = plan["fold_val_speakers"] or [None] * plan["num_folds"]
    refit = plan.get("refit", False)
    todo = [index for index in range(plan["num_folds"]) if not fold_finished(out_dir / fold_name(index), refit)]
    if progress:
        notice(f"{len(todo)} folds to train in {min(parallel, len(todo))} processes, {threads} torch threads each")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_fold, config, plan["fold_speakers"][index], out_dir / fold_name(index), False,
                               None, validation[index], refit): index for index in todo}
        for future in as_completed(futures):
            results = future.result()  # a failed fold raises here; the pool's exit waits for the running ones
            if progress:
                notice(f"{fold_name(futures[future])} done: test accuracy {results['test_accuracy']:.4f}, "
                       f"validation {results['val_accuracy']:.4f}")


def run_fold(run_config, speakers: list[str], fold_dir: Path, progress: bool,
             stop_after_epochs: int | None = None, val_speakers: list[str] | None = None,
             refit: bool = False) -> dict:
    """Train (or finish) one fold and write its ``predictions.csv``; a finished fold is read back.

    val_speakers: the fold's validation speakers (:func:`rotated_validation`; None: the run config's own).
    refit: then train (or finish) the fold's refit in ``fold_dir/refit`` (:func:`refit_run_config`).
    Returns the validated run's results."""
    outcome = _train_and_predict(fold_run_config(run_config, speakers, val_speakers), speakers, fold_dir, progress,
                                 stop_after_epochs)
    if refit and "interrupted_after_epoch" not in outcome:
        _train_and_predict(refit_run_config(run_config, speakers), speakers, fold_dir / REFIT, progress, None)
    return outcome


def _train_and_predict(config, speakers: list[str], fold_dir: Path, progress: bool,
                       stop_after_epochs: int | None) -> dict:
    """One run of a fold (validated or refit): trained or finished, then its ``predictions.csv``."""
    import json

    results_path = fold_dir / "results.json"
    if results_path.exists() and (fold_dir / "predictions.csv").exists():
        return json.loads(results_path.read_text())
    data = prepare_data(config.data, progress=progress, keep_waveforms=config.train.waveform_augmentation)
    if not results_path.exists():
        resume = (fold_dir / "last.pt").exists()
        if progress:
            label = fold_dir.name if fold_dir.name != REFIT else f"{fold_dir.parent.name} refit"
            notice(f"{label}: test speakers {', '.join(speakers)}" + (" (resumed)" if resume else ""))
        results = train(config.train, config.data, fold_dir, resume=resume, progress=progress,
                        stop_after_epochs=stop_after_epochs, data=data)
        if "interrupted_after_epoch" in results:
            return results
    model, _ = load_trained_model(fold_dir / "best.pt")
    output = evaluate(model, *data.test, num_classes=len(data.class_names), return_logits=True)
    logits = output["logits"]
    write_predictions(fold_dir / "predictions.csv", data.test_files, data.test[1], logits.argmax(1), logits,
                      data.class_names)
    return json.loads(results_path.read_text())


def _remove_cv(out_dir: Path) -> None:
    """Remove what a CV wrote in ``out_dir`` (only its own files and fold folders), the plan last."""
    for name in ("cv.csv", "cv.json", "cv.md", SUMMARY, "cv_accuracy.png"):
        (out_dir / name).unlink(missing_ok=True)
    for folder in sorted(out_dir.glob("fold[0-9]*")):
        if folder.is_dir():
            shutil.rmtree(folder)
    (out_dir / PLAN).unlink(missing_ok=True)


def _read_predictions(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{"file": row["file"], "label": row["label"], "prediction": row["prediction"]}
                for row in csv.DictReader(handle)]


def summarize(out_dir: str | Path, plan: dict) -> dict:
    """The summary of finished folds: written as ``cv_summary.json``, the ``cv`` table and a figure.

    Returns ``{"kind": "cv", "protocol", "num_folds", "folds": [table rows], "mean_test_accuracy",
    "std_test_accuracy" (sample standard deviation over folds, 0 for one fold), "worst_fold_accuracy",
    "pooled_test_accuracy" (all test recordings of all folds), "per_speaker": {speaker: {"accuracy",
    "samples"}}, "per_class": {class: {"accuracy", "samples"}}, "mean_val_accuracy" (best epochs),
    "mean_final_val_accuracy" (last epochs), "validation": "speakers" (speaker-disjoint) or "carved from
    training speakers", "refit": the same test-accuracy keys for the refits (None without them),
    "run_config"}``; accuracies are fractions.
    """
    import json

    from scnn.result_tables import write_table
    from scnn.viz.plots import plot_cv_accuracy

    out_dir = Path(out_dir)
    data = plan["run_config"]["data"]
    recordings = assign_groups(dataset_listing(_data_config(data)).recordings, data.get("group_pattern"),
                               data.get("group_manifest"))
    speaker_of = {str(r.path): r.speaker for r in recordings}
    refit = plan.get("refit", False)
    rows, predictions, refit_predictions = [], [], []
    for index, speakers in enumerate(plan["fold_speakers"]):
        folder = out_dir / fold_name(index)
        results = json.loads((folder / "results.json").read_text())
        fold_predictions = _read_predictions(folder / "predictions.csv")
        predictions += fold_predictions
        rows.append({
            "fold": index + 1, "test_speakers": ";".join(speakers),
            "val_speakers": None, "run": fold_name(index),
            "test_accuracy": results["test_accuracy"], "val_accuracy": results["val_accuracy"],
            "final_val_accuracy": _last_epoch_val_accuracy(folder),
            "best_epoch": results["best_epoch"], "epochs_run": results["epochs_run"],
            "test_samples": len(fold_predictions), "seconds_per_epoch": results["seconds_per_epoch"],
            "refit_test_accuracy": None,
        })
        if refit:
            rows[-1]["refit_test_accuracy"] = json.loads((folder / REFIT / "results.json").read_text())["test_accuracy"]
            refit_predictions += _read_predictions(folder / REFIT / "predictions.csv")

    unknown = [row["file"] for row in predictions + refit_predictions if row["file"] not in speaker_of]
    if unknown:
        raise ValueError(f"{out_dir}: {len(unknown)} predicted files are not in the dataset's listing any more "
                         f"(first: {unknown[0]})")
    validation = ("speakers" if data.get("num_val_speakers") else "carved from training speakers")
    for row in rows:
        row["val_speakers"] = _fold_val_speakers(out_dir / row["run"])
    summary = {
        "schema_version": RESULTS_SCHEMA_VERSION, "kind": "cv", "protocol": plan["protocol"],
        "num_folds": plan["num_folds"], "fold_seed": plan["fold_seed"], "folds": rows,
        **_accuracy_summary([row["test_accuracy"] for row in rows], predictions, speaker_of),
        "mean_val_accuracy": float(np.mean([row["val_accuracy"] for row in rows])),
        "mean_final_val_accuracy": float(np.mean([row["final_val_accuracy"] for row in rows])),
        "validation": validation, "refit": None, "run_config": plan["run_config"],
    }
    if refit:
        summary["refit"] = _accuracy_summary([row["refit_test_accuracy"] for row in rows], refit_predictions,
                                             speaker_of)
    write_json(out_dir / SUMMARY, summary)
    write_table(rows, out_dir / "cv.csv", "cv", {"protocol": plan["protocol"], "num_folds": plan["num_folds"],
                                                 "validation": validation})
    write_text(out_dir / "cv.md", cv_markdown(summary))
    plot_cv_accuracy(summary, out_dir / "cv_accuracy.png", title=f"{plan['run_config']['model']['name']}: "
                     f"{plan['protocol'].replace('_', ' ')}")
    return summary


def _accuracy_summary(fold_accuracies: list[float], predictions: list[dict], speaker_of: dict) -> dict:
    """Mean ± sample std (0 for one fold), worst and pooled test accuracy, per speaker and per class."""
    accuracies = np.array(fold_accuracies)

    def accuracy_by(key):
        groups: dict[str, list[bool]] = {}
        for row in predictions:
            groups.setdefault(key(row), []).append(row["label"] == row["prediction"])
        return {name: {"accuracy": float(np.mean(hits)), "samples": len(hits)} for name, hits in sorted(groups.items())}

    return {"mean_test_accuracy": float(accuracies.mean()),
            "std_test_accuracy": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
            "worst_fold_accuracy": float(accuracies.min()),
            "pooled_test_accuracy": float(np.mean([row["label"] == row["prediction"] for row in predictions])),
            "per_speaker": accuracy_by(lambda row: speaker_of[row["file"]]),
            "per_class": accuracy_by(lambda row: row["label"])}


def _last_epoch_val_accuracy(folder: Path) -> float:
    """The validation accuracy of a run's last epoch (its ``metrics.jsonl``): what a refit, which keeps
    its last epoch, is chosen by."""
    import json

    lines = [line for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return float(json.loads(lines[-1])["val_accuracy"])


def _data_config(values: dict):
    from scnn.data.prepare import DataConfig

    return DataConfig.from_dict(values)


def _fold_val_speakers(folder: Path) -> str | None:
    """The validation speakers a fold used (from its best.pt's split), or None where validation was carved."""
    from scnn.data.splits import split_recordings
    from scnn.io import load_checkpoint

    config = _data_config(load_checkpoint(folder / "best.pt")["data_config"])
    if not (config.val_speakers or config.num_val_speakers):
        return None
    recordings = assign_groups(dataset_listing(config).recordings, config.group_pattern, config.group_manifest)
    split = split_recordings(recordings, config.split, config.val_fraction, config.split_seed,
                             config.holdout_speaker, config.test_fraction, config.val_speakers,
                             config.num_val_speakers)
    return ";".join(speakers_of(split.val))


def cv_markdown(summary: dict) -> str:
    """The summary for people: the per-fold table, mean ± std, per speaker and per class (and the refits')."""
    from scnn.result_tables import markdown_table

    def headline(part: dict, what: str) -> str:
        return (f"{what} {100 * part['mean_test_accuracy']:.2f} % ± {100 * part['std_test_accuracy']:.2f} "
                f"(mean ± sample std over folds); worst fold {100 * part['worst_fold_accuracy']:.2f} %; pooled "
                f"{100 * part['pooled_test_accuracy']:.2f} %.")

    def accuracy_lines(title: str, values: dict, key: str) -> list[str]:
        return (["", f"## {title}", "", f"| {key} | accuracy (%) | recordings |", "|---|---|---|"]
                + [f"| {name} | {100 * v['accuracy']:.2f} | {v['samples']} |" for name, v in values.items()])

    refit = summary.get("refit")
    lines = [f"# Cross-validation: {summary['protocol'].replace('_', ' ')}, {summary['num_folds']} folds", "",
             headline(summary, "Test accuracy") + f" Validation: {summary['validation']}, mean "
             f"{100 * summary['mean_val_accuracy']:.2f} % (best epoch), {100 * summary['mean_final_val_accuracy']:.2f} "
             "% (last epoch)."]
    if refit:
        lines += ["", headline(refit, "Refit on the validation speakers too (last epoch): test accuracy")]
    lines += ["", markdown_table(summary["folds"], "cv").rstrip("\n")]
    lines += accuracy_lines("Per speaker", summary["per_speaker"], "speaker")
    lines += accuracy_lines("Per class", summary["per_class"], "class")
    if refit:
        lines += accuracy_lines("Per speaker, refit", refit["per_speaker"], "speaker")
        lines += accuracy_lines("Per class, refit", refit["per_class"], "class")
    return "\n".join(lines) + "\n"
