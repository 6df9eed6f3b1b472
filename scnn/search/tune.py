"""Ray Tune searches over neuron parameters (and robustness switches): the trainable, search spaces,
algorithms, Pareto fronts.

The trainable is a plain function of a config dict that trains with :func:`scnn.train.train`
and reports once per epoch (validation accuracy, loss, activation sparsity, synaptic
operations per sample), with a checkpoint, so ASHA-paused and restored trials resume.
Trials never see the test split; features are prepared once and shared through Ray's
object store (``tune.with_parameters``). Each trial sets torch's thread count to the CPUs
it was given: two trials each using every core were measured 30x slower.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

from scnn.data.prepare import DataConfig, PreparedData
from scnn.io import write_json
from scnn.metrics import profile_model
from scnn.train.config import TrainConfig
from scnn.train.loop import RESULT_NEUTRAL_DATA_FIELDS, RESULT_NEUTRAL_TRAIN_FIELDS, notice, train
from scnn.train.run import RunFolderError, SettingsMismatch, check_output_folder, same_folder, setting_differences

SEARCH_ALGORITHMS = ("random", "optuna", "hyperopt", "bayesopt")
VALIDATION_SAMPLES_FOR_COST = 200  # sparsity and SynOps are measured on this many validation samples


def neuron_search_space(algorithm: str, tune_lr: bool = False, tune_batch_size: bool = False,
                        models: list[str] | None = None) -> dict:
    """beta in [0, 1], threshold in (0, 5], num_steps integer in [1, 25] (+ optional lr, batch, model).

    Bayesian optimisation handles continuous dimensions only: there num_steps is drawn
    from [1, 26) and floored by the trainable, and batch size and model cannot be searched.
    """
    from ray import tune

    continuous_only = algorithm == "bayesopt"
    space = {"beta": tune.uniform(0.0, 1.0), "threshold": tune.uniform(0.05, 5.0),
             "num_steps": tune.uniform(1.0, 26.0) if continuous_only else tune.randint(1, 26)}
    if tune_lr:
        space["lr"] = tune.uniform(1e-4, 1e-2) if continuous_only else tune.loguniform(1e-4, 1e-2)
    if tune_batch_size or (models and len(models) > 1):
        if continuous_only:
            raise ValueError("bayesopt searches continuous parameters only: drop --tune-batch-size/--models")
        if tune_batch_size:
            space["batch_size"] = tune.choice([16, 32, 64])
        if models and len(models) > 1:
            space["model"] = tune.choice(models)
    return space


def ssm_search_space(algorithm: str) -> dict:
    """SSM baseline: model width H, state size P, depth, dt_max (and lr)."""
    from ray import tune

    if algorithm == "bayesopt":
        return {"features": tune.uniform(8, 65), "state_size": tune.uniform(8, 65), "layers": tune.uniform(1, 5),
                "dt_max": tune.uniform(0.01, 0.5), "lr": tune.uniform(1e-3, 1e-2)}
    return {"features": tune.choice([8, 16, 24, 32, 48, 64]), "state_size": tune.choice([8, 16, 24, 32, 64]),
            "layers": tune.randint(1, 5), "dt_max": tune.loguniform(0.01, 0.5), "lr": tune.loguniform(1e-3, 1e-2)}


UTTERANCE_CHOICES = ("none", "mean", "mean_var")
SPEAKER_CHOICES = ("none", "mean")
ROBUST_TRAIN_KEYS = ("vtlp", "noise_prob", "speed", "mixup")


def robust_search_space(algorithm: str) -> dict:
    """Augmentation and normalisation switches for speaker-independent accuracy: per-utterance
    normalisation (data.utterance_norm), speaker-level CMN (data.speaker_norm), VTLP (train.vtlp), additive noise share (train.noise_prob, at the
    base config's SNR range), speed perturbation (train.speed) and mixup (train.mixup).

    The objective is the trainable's: validation accuracy. For a speaker-independent choice give a
    speaker split with validation speakers of its own (``data.split=speaker data.holdout_speaker=S
    data.val_speakers=V``): the objective is then one leave-one-speaker-out fold's validation-speaker
    accuracy, a voice that neither training nor the test saw. Bayesian optimisation gets continuous
    ranges (the normalisations as indices in [0, 3) and [0, 2), floored).
    """
    from ray import tune

    if algorithm == "bayesopt":
        return {"utterance_norm": tune.uniform(0.0, 3.0), "speaker_norm": tune.uniform(0.0, 2.0),
                "vtlp": tune.uniform(0.0, 0.2), "noise_prob": tune.uniform(0.0, 0.8), "speed": tune.uniform(0.0, 0.15),
                "mixup": tune.uniform(0.0, 0.4)}
    return {"utterance_norm": tune.choice(list(UTTERANCE_CHOICES)), "speaker_norm": tune.choice(list(SPEAKER_CHOICES)),
            "vtlp": tune.choice([0.0, 0.05, 0.1, 0.15]),
            "noise_prob": tune.choice([0.0, 0.3, 0.5]), "speed": tune.choice([0.0, 0.05, 0.1]),
            "mixup": tune.choice([0.0, 0.2])}


def _choice_of_trial(config: dict, key: str, choices: tuple) -> str | None:
    """The trial's value of ``key`` (a name, or bayesopt's index in [0, len(choices)), floored); None if not searched."""
    value = config.get(key)
    if value is None or isinstance(value, str):
        return value
    return choices[min(len(choices) - 1, max(0, int(math.floor(value))))]


def utterance_norm_of_trial(config: dict) -> str | None:
    """The trial's per-utterance normalisation; None if not searched."""
    return _choice_of_trial(config, "utterance_norm", UTTERANCE_CHOICES)


def speaker_norm_of_trial(config: dict) -> str | None:
    """The trial's speaker-level normalisation; None if not searched."""
    return _choice_of_trial(config, "speaker_norm", SPEAKER_CHOICES)


def data_config_from_trial(config: dict, data_config: DataConfig) -> DataConfig:
    """The data config of a trial: the base one with the trial's normalisations, where searched."""
    utterance, speaker = utterance_norm_of_trial(config), speaker_norm_of_trial(config)
    if utterance is not None:
        data_config = replace(data_config, utterance_norm=utterance)
    return data_config if speaker is None else replace(data_config, speaker_norm=speaker)


def renormalized(data: PreparedData, utterance: str, speaker: str = "none") -> PreparedData:
    """``data`` normalised again with speaker-level normalisation ``speaker`` and per-utterance normalisation
    ``utterance`` (the per-coefficient statistics refitted on its training split): the features are
    un-normalised with ``data``'s own normaliser, so trials share one prepared data set whatever
    normalisation they draw; it must have been prepared with neither."""
    import numpy as np

    from scnn.features.normalize import Normalizer
    from scnn.features.speaker_norm import apply_speaker_norm, speaker_normalize, speaker_statistics

    old, (old_speaker, recordings, seed) = data.normalizer, data.speaker_norm
    if utterance == old.utterance and speaker == old_speaker:
        return data
    if old.utterance != "none" or old_speaker != "none":
        raise ValueError(f"cannot change the normalisation (utterance {old.utterance!r}, speaker {old_speaker!r}) "
                         "after the fact; prepare the search's data with data.utterance_norm=none data.speaker_norm=none")

    def raw(x: torch.Tensor) -> np.ndarray:  # [N, 1, rows, frames] -> [N, rows, frames] as extracted
        x = x[:, 0].numpy()
        return x * old.std[:, None] + old.mean[:, None] if old.enabled else x

    names = [(data.train_speakers, data.train_files), (data.val_speakers, data.val_files),
             (data.test_speakers, data.test_files)]
    raws = [raw(x) for x, _ in (data.train, data.val, data.test)]
    train_stats = None if speaker == "none" else speaker_statistics(raws[0], *names[0], speaker, recordings, seed)
    spoken = [raws[0] if train_stats is None else apply_speaker_norm(raws[0], *train_stats).astype(np.float32)]
    spoken += [speaker_normalize(x, speakers, keys, speaker, recordings, seed)
               for x, (speakers, keys) in zip(raws[1:], names[1:])]
    new = Normalizer.fit(spoken[0], enabled=old.enabled, utterance=utterance)
    parts = [(torch.from_numpy(new(x)).unsqueeze(1), y) for x, (_, y) in zip(spoken, (data.train, data.val, data.test))]
    stats = None
    if train_stats is not None and data.train_waveforms is not None:  # per-batch features from augmented waveforms
        stats = tuple(torch.from_numpy(a) for a in train_stats)
    return replace(data, train=parts[0], val=parts[1], test=parts[2], normalizer=new, train_speaker_stats=stats,
                   speaker_norm=(speaker, recordings, seed))


def train_config_from_trial(config: dict, base: TrainConfig) -> TrainConfig:
    """Map a trial's sampled values onto a training config (integers rounded down where needed)."""
    overrides = dict(base.model_overrides)
    changes = {}
    for key in ("beta", "threshold", "dt_max"):
        if key in config:
            overrides[key] = float(config[key])
    if "num_steps" in config:
        overrides["num_steps"] = int(math.floor(config["num_steps"]))
    for key in ("features", "state_size"):
        if key in config:
            overrides[key] = max(2, int(config[key]) // 2 * 2)  # SSM state sizes are even
    if "layers" in config:
        overrides["downsample"] = [1] * int(config["layers"])
    if "lr" in config:
        changes["lr"] = float(config["lr"])
    if "batch_size" in config:
        changes["batch_size"] = int(config["batch_size"])
    if "model" in config:
        changes["model"] = config["model"]
    for key in ROBUST_TRAIN_KEYS:
        if key in config:
            changes[key] = float(config[key])
    return replace(base, model_overrides=overrides, **changes)


def trainable(config: dict, data: PreparedData, base: TrainConfig, data_config: DataConfig) -> None:
    """Ray Tune function trainable: one trial, reporting every epoch with a checkpoint."""
    from ray import tune

    torch.set_num_threads(max(1, base.threads))
    train_config = train_config_from_trial(config, base)
    data_config = data_config_from_trial(config, data_config)
    data = renormalized(data, data_config.utterance_norm, data_config.speaker_norm)
    run_dir = Path(tempfile.mkdtemp(prefix="scnn-trial-"))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a paused or restored trial continues from its last epoch
        with checkpoint.as_directory() as folder:
            shutil.copy(Path(folder) / "last.pt", run_dir / "last.pt")
    cost_x = data.val[0][:VALIDATION_SAMPLES_FOR_COST]

    def report(row: dict, model) -> None:
        cost = profile_model(model, cost_x).row() if len(cost_x) else {}  # Profile.row(): one flat format
        metrics = {"val_accuracy": row["val_accuracy"], "val_loss": row.get("val_loss", float("nan")),
                   "train_loss": row["train_loss"], "epoch": row["epoch"],
                   "activation_sparsity": cost.get("activation_sparsity", float("nan")),
                   "synops": cost.get("synops", float("nan"))}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(run_dir)))

    try:
        train(train_config, data_config, run_dir, resume=checkpoint is not None, progress=False, data=data,
              epoch_callback=report)
    finally:  # also when the scheduler stops the trial (Ray raises inside report); Ray keeps its own copies
        shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- the search folder

SEARCH_RECORD = "search.json"
SEARCH_KIND = "scnn Ray Tune search"
SEARCH_FILES = ("search.json", "trials.json", "pareto.json", "pareto.md", "pareto.png", "summary.json")
SEARCH_FOLDERS = ("ray", "retrained")  # Ray's experiment state and trials; the final retraining


def search_record(settings: dict, base: TrainConfig, data_config: DataConfig) -> dict:
    """What a search is: ``settings`` (the search's own choices: model, space, algorithm, samples,
    epochs, seed, ...; leave out what does not change results, such as CPUs per trial or the
    cluster address), the base training config and the data config, less the fields that do
    not change results (threads, device, cache_dir, download)."""
    return {"kind": SEARCH_KIND, "version": 1, "settings": dict(settings),
            "train_config": {k: v for k, v in asdict(base).items() if k not in RESULT_NEUTRAL_TRAIN_FIELDS},
            "data_config": {k: v for k, v in asdict(data_config).items() if k not in RESULT_NEUTRAL_DATA_FIELDS}}


def holds_search(out_dir: str | Path) -> list[str]:
    """What in ``out_dir`` says it holds a search (its record, Ray's state, results); empty if nothing."""
    out_dir = Path(out_dir)
    return [name for name in (SEARCH_RECORD, "ray", "trials.json", "summary.json") if (out_dir / name).exists()]


def claim_search_folder(out_dir: str | Path, record: dict, resume: bool = False, overwrite: bool = False) -> Path:
    """Make ``out_dir`` the folder of the search ``record`` (:func:`search_record`), or refuse.

    The folder is checked writable first. A folder that holds a search needs ``resume`` (the
    record must then equal the folder's: each differing field is named, old -> new) or
    ``overwrite`` (the old search's files and folders are removed, nothing else). The record is
    written as ``search.json``. Hold :func:`scnn.train.run.folder_lock` around the search so
    that a second driver on the same folder is refused.
    """
    out_dir = check_output_folder(out_dir)
    if resume and overwrite:
        raise RunFolderError(f"resume and overwrite exclude each other: resume continues the search in {out_dir}, "
                             "overwrite replaces it")
    present = holds_search(out_dir)
    if present and not (resume or overwrite):
        raise RunFolderError(f"{out_dir} already holds a search ({', '.join(present)}); pass --resume to continue "
                             "it, --overwrite to replace it, or choose another --out")
    if present and overwrite:
        for name in SEARCH_FILES:  # the record and the results first, then Ray's state and the retraining
            (out_dir / name).unlink(missing_ok=True)
        for name in SEARCH_FOLDERS:
            shutil.rmtree(out_dir / name, ignore_errors=True)
        notice(f"--overwrite: removed the previous search ({', '.join(present)}) from {out_dir}")
    elif present and (out_dir / SEARCH_RECORD).exists():
        old = json.loads((out_dir / SEARCH_RECORD).read_text())
        lines = setting_differences(old.get("settings", {}), record["settings"], "")
        lines += setting_differences(old.get("train_config", {}), record["train_config"], "train_config.")
        lines += setting_differences(old.get("data_config", {}), record["data_config"], "data_config.",
                                     ignore=("data_dir",))
        before, after = old.get("data_config", {}).get("data_dir"), record["data_config"].get("data_dir")
        if not same_folder(before, after):
            lines.append(f"data_config.data_dir: {before!r} -> {after!r}")
        if lines:
            raise SettingsMismatch(f"cannot resume the search in {out_dir} with other settings (old -> new): "
                                   f"{'; '.join(lines)}. Resume with its own settings, pass --overwrite to replace "
                                   "it, or choose another --out")
    elif present:
        notice(f"--resume: {out_dir} has no {SEARCH_RECORD} (an older version's search); its settings cannot be "
               "checked, and are recorded now")
    write_json(out_dir / SEARCH_RECORD, record)
    return out_dir


def make_search_algorithm(name: str, seed: int, multi_objective: bool = False):
    """A Ray Tune searcher by name (None: Ray's random/grid variant generator)."""
    if name not in SEARCH_ALGORITHMS:
        raise ValueError(f"unknown search algorithm {name!r}; choose one of {SEARCH_ALGORITHMS}")
    if multi_objective and name != "optuna":
        raise ValueError("multi-objective search uses Optuna's sampler: pass --search optuna")
    if name == "random":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=seed)
    if name == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        if multi_objective:
            return OptunaSearch(metric=["val_accuracy", "synops"], mode=["max", "min"],
                                sampler=optuna.samplers.NSGAIISampler(seed=seed))
        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
    if name == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return HyperOptSearch(random_state_seed=seed)
    from ray.tune.search.bayesopt import BayesOptSearch

    return BayesOptSearch(random_state=seed, random_search_steps=4)


def pareto_front(points: list[dict], maximize: str = "val_accuracy", minimize: str = "synops") -> list[dict]:
    """Points not dominated by another (higher or equal ``maximize`` and lower or equal ``minimize``,
    strictly better in one), sorted by ``minimize``."""
    front = []
    for point in points:
        dominated = any(other[maximize] >= point[maximize] and other[minimize] <= point[minimize]
                        and (other[maximize] > point[maximize] or other[minimize] < point[minimize])
                        for other in points)
        if not dominated:
            front.append(point)
    return sorted(front, key=lambda p: p[minimize])


def sparsity_front(points: list[dict], maximize: str = "val_accuracy") -> list[dict]:
    """Points not dominated in accuracy and activation sparsity (both maximised), sorted by sparsity."""
    front = pareto_front([{**p, "activation_density": 1 - p["activation_sparsity"]} for p in points], maximize,
                         minimize="activation_density")
    return sorted(front, key=lambda p: p["activation_sparsity"])


def load_trials(path: str | Path) -> list[dict]:
    """Finished trials of a search: ``sweeps/tune_neuron.py``'s output folder, its ``trials.json``,
    or a CSV of trials (Ray's ``config/...`` column prefixes are dropped).

    Returns the trials with a validation accuracy and SynOps (those that finished an epoch),
    numbers from a CSV as floats; raises FileNotFoundError naming what was looked for.
    """
    import csv
    import json

    path = Path(path)
    if path.is_dir():
        path = path / "trials.json"
    if not path.is_file():
        raise FileNotFoundError(f"no search results at {path}: run sweeps/tune_neuron.py --out FOLDER first")
    if path.suffix == ".csv":
        with path.open() as handle:
            trials = [{key.removeprefix("config/"): _number_or_text(value) for key, value in row.items()}
                      for row in csv.DictReader(handle)]
    else:
        trials = json.loads(path.read_text())
    return [t for t in trials if isinstance(t.get("val_accuracy"), (int, float)) and
            isinstance(t.get("synops"), (int, float)) and not math.isnan(t["synops"])]


def _number_or_text(text: str):
    try:
        return float(text)
    except ValueError:
        return text if text else None
