"""The one fit loop (float training, QAT and searches) and :func:`train`, which runs it in a folder.

:func:`fit` is the whole loop in one screen: shuffle, augment, step, validate, keep the best
weights, call back after each epoch. :func:`train` adds what a run folder needs: a checkpoint
written atomically after every epoch with everything needed to continue (weights, optimiser,
scheduler, RNG states, history), so ``resume=True`` reaches the same final weights as an
uninterrupted run with the same seed, then the test evaluation and ``results.json``.
QAT (:func:`scnn.quant.workflow.fine_tune`) and the Ray Tune trainable call :func:`fit` too.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from scnn.train.run_config import RunConfig
from scnn.data.prepare import DataConfig, PreparedData, compare_test_sets, prepare_data
from scnn.features.augment import augment_batch
from scnn.features.encoders import model_encoder
from scnn.features.mfcc import FeatureConfig
from scnn.features.wave_augment import mixup_batch
from scnn.features.normalize import Normalizer
from scnn.io import load_checkpoint, save_checkpoint, write_json
from scnn.metrics import profile_model
from scnn.models.registry import count_parameters, create_model, model_config, model_to_dict
from scnn.train.config import TrainConfig, resolve_device
from scnn.train.distributed import current_world
from scnn.train.evaluate import CHECKPOINT_VERSION, evaluate
from scnn.train.losses import make_loss
from scnn.train.run import (RESULTS_SCHEMA_VERSION, SettingsMismatch, check_output_folder, claim_run_folder,
                             folder_lock, library_versions, remove_run_files, remove_stale_temporaries, same_folder,
                             setting_differences, write_history)




def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose 'adam' or 'adamw'")


def _make_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"unknown schedule {config.schedule!r}; choose cosine, onecycle or constant")


def training_parts(config: TrainConfig, model: nn.Module, train_size: int) -> tuple:
    """What one run trains with: (optimizer, per-batch scheduler, loss, shuffle generator,
    augmentation generator), the generators seeded from ``config.seed``."""
    optimizer = _make_optimizer(config, model)
    steps_per_epoch = (train_size + config.batch_size - 1) // config.batch_size
    scheduler = _make_scheduler(config, optimizer, steps_per_epoch)
    shuffle = torch.Generator().manual_seed(config.seed)
    augmentation = torch.Generator().manual_seed(config.seed + 1)
    return optimizer, scheduler, make_loss(config.loss), shuffle, augmentation




@dataclass
class FitState:
    """Where a fit stands after an epoch: what a resume needs besides the model and the optimiser.

    history: one metrics row per epoch; best: ``{"val_accuracy", "val_loss", "epoch", "state"}``
    (state: the best weights, on the CPU); elapsed_s: training and validation wall time so far.
    """

    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"val_accuracy": -1.0, "val_loss": 0.0, "epoch": -1, "state": None})
    elapsed_s: float = 0.0
    interrupted: bool = False  # stopped by ``stop_after_epochs``, to be resumed

    @property
    def next_epoch(self) -> int:
        return len(self.history)

    def consider(self, row: dict, model: nn.Module, validated: bool = True) -> None:
        """Keep the model's weights if this epoch is the best: highest validation accuracy, then lowest loss.

        validated False (no validation set): every epoch replaces the kept one, so the run ends
        with its last epoch (a fixed budget, as a refit on training plus validation data uses).
        """
        score = (row["val_accuracy"], -row.get("val_loss", 0.0))
        if not validated or score > (self.best["val_accuracy"], -self.best.get("val_loss", 0.0)):
            self.best = {"val_accuracy": row["val_accuracy"], "val_loss": row.get("val_loss", 0.0),
                         "epoch": row["epoch"], "state": {k: v.detach().cpu().clone()
                                                          for k, v in model.state_dict().items()}}


def fit(model: nn.Module, data: PreparedData, config: TrainConfig, parts: tuple | None = None,
        state: FitState | None = None, after_epoch: Callable | None = None, progress: bool = True,
        stop_after_epochs: int | None = None, label: str = "epoch") -> FitState:
    """Train ``model`` on ``data.train`` for epochs ``state.next_epoch .. config.epochs - 1``.

    parts: :func:`training_parts` of this run (made here if None; pass them to resume, with
    their states loaded). after_epoch(row, state, parts) runs after each epoch (checkpoints,
    Ray Tune reports). Stops early after ``config.patience`` epochs without a better
    validation accuracy, or after ``stop_after_epochs`` epochs of this call. The best
    weights are in ``state.best["state"]``; the model keeps the last epoch's.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    train_x, train_y = data.train
    parts = parts if parts is not None else training_parts(config, model, len(train_y))
    optimizer, scheduler, loss_fn, shuffle, augmentation = parts
    state = state if state is not None else FitState()
    num_classes = len(data.class_names)
    current_world().broadcast_parameters(model)  # data-parallel: every process starts from rank 0's weights
    batch_source = waveform_batches(data, config)
    if config.event_augmentation:  # spike events jittered and dropped, then binned, per batch (SHD, SSC)
        from scnn.data.heidelberg import event_batches

        batch_source = event_batches(data, config)
    if config.patience and state.history and state.next_epoch - state.best["epoch"] >= config.patience:
        return state  # a resumed run that had stopped early stays stopped (one more epoch would change it)
    for epoch in range(state.next_epoch, config.epochs):
        epoch_start = time.perf_counter()
        order = torch.randperm(len(train_y), generator=shuffle)
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"{label} {epoch + 1}/{config.epochs}",
                   leave=False, disable=not progress, mininterval=1.0)
        train_loss, train_accuracy = train_epoch(model, optimizer, scheduler, loss_fn, config, train_x, train_y,
                                                 order, augmentation, device, bar, batch_source)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
               "lr": optimizer.param_groups[0]["lr"], "train_time_s": time.perf_counter() - epoch_start}
        if len(data.val[1]):
            val = evaluate(model, *data.val, num_classes=num_classes, loss_fn=loss_fn)
            row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            row.update({f"val_spike_rate_{i}": r for i, r in enumerate(val.get("spike_rate_per_layer", []))})
        else:  # no validation set: the training accuracy stands in the curves, the last epoch is kept
            row["val_accuracy"] = row["train_accuracy"]
        row["epoch_time_s"] = time.perf_counter() - epoch_start
        state.elapsed_s += row["epoch_time_s"]
        state.history.append(row)
        state.consider(row, model, validated=bool(len(data.val[1])))
        if after_epoch is not None:
            after_epoch(row, state, parts)
        if progress:
            print(f"{label} {epoch + 1:3d}  loss {row['train_loss']:.4f}  train {row['train_accuracy']:.4f}  "
                  f"val {row['val_accuracy']:.4f}  {row['epoch_time_s']:.1f}s")
        stale = epoch + 1 - state.best["epoch"]
        if config.patience and stale >= config.patience:
            if progress:
                print(f"early stopping: no better validation accuracy for {stale} epochs")
            break
        if stop_after_epochs is not None:
            stop_after_epochs -= 1
            if stop_after_epochs <= 0:
                state.interrupted = True
                break
    return state


RESULT_NEUTRAL_TRAIN_FIELDS = ("threads", "device")  # where it runs, not what it computes: may change on resume
RESULT_NEUTRAL_DATA_FIELDS = ("cache_dir", "download")  # where features are cached, whether FSDD may be fetched
DATA_DERIVED_MODEL_FIELDS = ("input_shape", "num_classes")  # set from the data, compared once it is prepared


def notice(message: str) -> None:
    """A line the user must see whatever ``progress`` says (stderr, so a redirected stdout does not hide it)."""
    print(message, file=sys.stderr, flush=True)


def train(train_config: TrainConfig, data_config: DataConfig, out_dir: str | Path, resume: bool = False,
          progress: bool = True, stop_after_epochs: int | None = None, data: PreparedData | None = None,
          epoch_callback=None, overwrite: bool = False, extend_epochs: bool = False) -> dict:
    """Train, checkpoint every epoch, evaluate the best-validation weights on test, write results.

    out_dir receives: ``last.pt`` (resumable checkpoint), ``best.pt`` (best validation
    weights, what ``evaluate.py`` loads), ``metrics.csv`` and ``metrics.jsonl`` (one row
    per epoch), ``results.json``, ``training_curves.png``, ``confusion_matrix.png``.

    The folder is checked writable before any work and locked (``out_dir/.lock``) for the
    whole call; a second process training into it is refused. A folder that already holds
    a run is never reused silently:

    - resume: continue from ``last.pt``. The settings given must be the checkpoint's (every
      field of train_config, data_config and the model's config, except threads, device,
      cache_dir and download, which do not change the result); any difference is refused
      with a :class:`~scnn.train.run.SettingsMismatch` naming each field (old -> new). With
      no ``last.pt`` in an empty folder, it starts from scratch and says so.
    - extend_epochs: with resume, allow a larger ``train_config.epochs`` than the run was
      planned with; the learning-rate schedule then continues from where it stands and ends
      at the new last epoch (see :func:`extend_schedule`), which is printed and recorded in
      ``results.json`` (``schedule_extensions``).
    - overwrite: start afresh; the old run's files are removed once the data are prepared
      and the model is built, before the first epoch writes.

    stop_after_epochs: return after this many epochs of this call (a deliberate
    interruption; ``resume=True`` continues). epoch_callback(row, model) is called after
    each epoch, once the checkpoint is written, with the metrics row and the model (the
    Ray Tune trainable reports from it).
    Returns the results dict (``test_accuracy`` is a fraction).

    Data-parallel (:mod:`scnn.train.distributed`, a process group already initialised): rank 0 alone
    checks, locks and writes the folder, prints, and evaluates on test; the other processes train
    beside it and return ``{"rank": r, "epochs_run": n}``.
    """
    world = current_world()
    with ExitStack() as held:
        def claim() -> Path:
            folder = check_output_folder(out_dir)
            held.enter_context(folder_lock(folder))
            claim_run_folder(folder, resume, overwrite)
            remove_stale_temporaries(folder)
            return folder

        folder = world.main_first(claim, others=lambda: Path(out_dir))
        return _train_in_folder(train_config, data_config, folder, resume, progress and world.is_main,
                                stop_after_epochs, data, epoch_callback, overwrite, extend_epochs)


def model_for_data(name: str, overrides: dict, data: PreparedData) -> nn.Module:
    """Model ``name`` with ``overrides``, built for the prepared data: ``input_shape`` and ``num_classes`` come
    from the data (an override may restate them, not change them), and the model must take the data's static
    features ``[B, C, F, W]``: a model whose input kind is "sequence" through a sequence encoding (e.g.
    ``model.encoding=frames``, one feature frame per step; :func:`scnn.features.encoders.model_input`)."""
    derived = {"input_shape": tuple(data.input_shape), "num_classes": len(data.class_names)}
    for key, value in derived.items():
        given = overrides.get(key)
        if given is not None and (tuple(int(v) for v in given) if key == "input_shape" else int(given)) != value:
            hint = " (for one feature frame per step, set model.encoding=frames)" if key == "input_shape" else ""
            raise ValueError(f"model.{key} is set from the data ({value}), got {given!r}; leave it out{hint}")
    model = create_model(name, **{**overrides, **derived})
    model_encoder(model, (len(data.train[1]), *data.input_shape))  # refused here, not at the first batch
    return model


def _train_in_folder(train_config: TrainConfig, data_config: DataConfig, out_dir: Path, resume: bool, progress: bool,
                     stop_after_epochs: int | None, data: PreparedData | None, epoch_callback, overwrite: bool,
                     extend_epochs: bool) -> dict:
    """:func:`train` once its folder is checked, locked and claimed (by rank 0, where data-parallel)."""
    world = current_world()
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    device = resolve_device(train_config.device, train_config.tf32)
    if device.type == "cpu":
        from scnn.engine import keep_freed_memory

        keep_freed_memory()  # large activation buffers reused, not page-faulted in every step
    last_path = out_dir / "last.pt"
    checkpoint = load_checkpoint(last_path) if resume and last_path.exists() else None
    extension = None
    if resume and checkpoint is None:
        notice(f"--resume: no checkpoint at {last_path}, starting from scratch")
    if checkpoint is not None:  # refused here, before the data are prepared
        extension = check_resume_settings(checkpoint, train_config, data_config, extend_epochs, last_path)

    if data is None:
        normalizer = Normalizer.from_state_dict(checkpoint["normalizer"]) if checkpoint else None
        # Rank 0 first: it fills the feature cache, the others then read it.
        data = world.main_first(lambda: prepare_data(data_config, normalizer=normalizer, progress=progress,
                                                     keep_waveforms=train_config.waveform_augmentation))
    torch.manual_seed(train_config.seed)
    model = model_for_data(train_config.model, train_config.model_overrides, data)
    if checkpoint is not None:
        check_resumed_model(checkpoint, model, data, last_path)
    model.to(device)
    parts = training_parts(train_config, model, len(data.train[1]))
    optimizer, scheduler, loss_fn, shuffle, augmentation = parts
    state = FitState()
    extensions = []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        scheduler.load_state_dict(checkpoint["scheduler_state"])
        shuffle.set_state(checkpoint["rng"]["shuffle"])
        augmentation.set_state(checkpoint["rng"]["augmentation"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        state = FitState(checkpoint["history"], checkpoint["best"], checkpoint["elapsed_s"])
        extensions = list(checkpoint.get("schedule_extensions", []))
    if extension is not None:
        old_epochs, new_epochs = extension
        steps_per_epoch = (len(data.train[1]) + train_config.batch_size - 1) // train_config.batch_size
        lr = optimizer.param_groups[0]["lr"]
        extend_schedule(scheduler, new_epochs * steps_per_epoch)
        extensions.append({"after_epoch": state.next_epoch, "from_epochs": old_epochs, "to_epochs": new_epochs,
                           "schedule": train_config.schedule, "lr": lr})
        notice(f"--extend-epochs: {out_dir} planned for {old_epochs} epochs now runs {new_epochs}; after epoch "
               f"{state.next_epoch} the {train_config.schedule} learning rate continues from {lr:.3g} and ends "
               f"with epoch {new_epochs} (no restart)")
        if world.is_main:
            remove_run_files(out_dir, ("results.json", "confusion_matrix.png", "training_curves.png"))
    if overwrite and world.is_main:
        removed = remove_run_files(out_dir)
        if removed:
            notice(f"--overwrite: removed the previous run's {', '.join(removed)} from {out_dir}")

    run_config = RunConfig(model={"name": train_config.model, **train_config.model_overrides}, data=data_config,
                           train=train_config)
    description = {
        "model": model_to_dict(model), "run_config": run_config.to_dict(), "train_config": asdict(train_config),
        "data_config": asdict(data_config), "feature_config": asdict(data.feature_config),
        "normalizer": data.normalizer.state_dict(), "class_names": data.class_names,
        "checkpoint_version": CHECKPOINT_VERSION,
        "test_set": data.test_set,  # files and content digests, compared by evaluate_checkpoint
    }
    if progress and state.next_epoch == 0:
        print(f"run config ({out_dir}):\n{run_config.dump()}", end="")

    def save_best_and_history(state: FitState) -> None:
        if not world.is_main:  # data-parallel: one writer
            return
        save_checkpoint(out_dir / "best.pt", {**description, "epoch": state.best["epoch"] - 1,
                                              "model_state": state.best["state"]})
        write_history(out_dir, state.history)

    def save_epoch(row: dict, state: FitState, parts: tuple) -> None:
        if not world.is_main:
            return
        checkpoint = {
            **description, "epoch": row["epoch"] - 1, "elapsed_s": state.elapsed_s, "history": state.history,
            "best": state.best, "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(), "schedule_extensions": extensions,
            "rng": {"shuffle": shuffle.get_state(), "augmentation": augmentation.get_state(),
                    "torch": torch.get_rng_state()},
        }
        save_checkpoint(last_path, checkpoint)
        save_best_and_history(state)
        if epoch_callback is not None:
            epoch_callback(row, model)

    state = fit(model, data, train_config, parts, state, save_epoch, progress, stop_after_epochs)
    if state.interrupted:
        return {"interrupted_after_epoch": state.next_epoch}
    if not world.is_main:
        return {"rank": world.rank, "epochs_run": len(state.history)}
    # Again, in case a kill fell between the last epoch's last.pt and best.pt: a resume with no
    # epoch left to train must not leave an older best.pt beside the results of the newer one.
    save_best_and_history(state)
    model.load_state_dict(state.best["state"])
    results = _final_evaluation(model, data, loss_fn, state.history, state.best, state.elapsed_s, description,
                                device, out_dir, extensions)
    if progress:
        print(f"test accuracy {results['test_accuracy']:.4f} (best validation epoch {state.best['epoch']}); "
              f"results in {out_dir}")
    return results


def check_resume_settings(checkpoint: dict, train_config: TrainConfig, data_config: DataConfig, extend_epochs: bool,
                          path: Path) -> tuple[int, int] | None:
    """Refuse a resume whose settings differ from the checkpoint's; returns (old, new) epochs when
    ``extend_epochs`` grows the budget, else None.

    Compared: every TrainConfig field but threads and device (model_overrides through the
    model's effective config, so restating a default is no change), every DataConfig field but
    cache_dir and download (data_dir by the folder it resolves to), and the model's config.
    One SettingsMismatch names every differing field. Fields a checkpoint of an older version
    lacks are taken at today's defaults.
    """
    old_train = {**asdict(TrainConfig()), **checkpoint.get("train_config", {})}
    new_train = asdict(train_config)
    lines = setting_differences(old_train, new_train, "train_config.",
                                ignore=RESULT_NEUTRAL_TRAIN_FIELDS + ("epochs", "model_overrides"))
    if old_train["model"] == new_train["model"] and "model" in checkpoint:
        family, config = model_config(train_config.model, **train_config.model_overrides)
        old_model = {"family": checkpoint["model"].get("family"), **checkpoint["model"].get("config", {})}
        lines += setting_differences(old_model, {"family": family, **asdict(config)}, "model.",
                                     ignore=DATA_DERIVED_MODEL_FIELDS)
    old_data = {**asdict(DataConfig()), **checkpoint.get("data_config", {})}
    if "layout" in old_data:  # the first version's name of ``dataset``
        old_data["dataset"] = old_data.pop("layout")
    new_data = asdict(data_config)
    lines += setting_differences(old_data, new_data, "data_config.", ignore=RESULT_NEUTRAL_DATA_FIELDS + ("data_dir",))
    if not same_folder(old_data.get("data_dir"), new_data["data_dir"]):
        lines.append(f"data_config.data_dir: {old_data.get('data_dir')!r} -> {new_data['data_dir']!r}")

    old_epochs, new_epochs, extension = old_train["epochs"], train_config.epochs, None
    if new_epochs > old_epochs and extend_epochs:
        done = len(checkpoint.get("history", []))
        if train_config.schedule != "constant" and done >= old_epochs:
            raise SettingsMismatch(
                f"cannot extend {path}: its {train_config.schedule} learning-rate schedule ended with epoch "
                f"{old_epochs} (learning rate ~0), so more epochs would not train; start a new run with "
                f"{new_epochs} epochs (--overwrite, or another --out)")
        extension = (old_epochs, new_epochs)
    elif new_epochs != old_epochs:
        hint = " (to train longer, pass --extend-epochs)" if new_epochs > old_epochs else ""
        lines.append(f"train_config.epochs: {old_epochs} -> {new_epochs}{hint}")
    if lines:
        raise SettingsMismatch(f"cannot resume {path} with other settings (old -> new): {'; '.join(sorted(lines))}. "
                               "Resume with the run's own settings, or start a new run (--overwrite, or another --out)")
    return extension


def check_resumed_model(checkpoint: dict, model: nn.Module, data: PreparedData, path: Path) -> None:
    """Refuse a resume whose model, features or test set (known once the data are prepared: files and
    content digests) differ from the checkpoint's."""
    lines = []
    if "model" in checkpoint:
        old = checkpoint["model"]
        new = model_to_dict(model)
        lines += setting_differences({"family": old.get("family"), **old.get("config", {})},
                                     {"family": new["family"], **new["config"]}, "model.")
    if "feature_config" in checkpoint:  # fields an older checkpoint lacks are taken at today's defaults
        old_features = {**asdict(FeatureConfig()), **checkpoint["feature_config"]}
        lines += setting_differences(old_features, asdict(data.feature_config), "feature_config.")
    lines += [f"test set: {line}" for line in compare_test_sets(checkpoint.get("test_set") or {}, data.test_set)]
    if lines:
        raise SettingsMismatch(f"cannot resume {path} with other settings (old -> new): {'; '.join(lines)}. "
                               "Resume with the run's own settings, or start a new run (--overwrite, or another --out)")


def extend_schedule(scheduler, total_steps: int) -> None:
    """Stretch a resumed per-batch learning-rate schedule to ``total_steps``, continuing from where it stands.

    cosine: torch's CosineAnnealingLR is chainable: each step scales ``lr - eta_min`` by
    ``(1 + cos(pi t / T)) / (1 + cos(pi (t - 1) / T))``; with ``T`` = the new total the rest of
    the run follows the new total's cosine, scaled to start at today's rate, so it falls
    monotonically to eta_min at the new last step (never back up, as a warm restart would).
    onecycle: still warming up, the peak stays where it was and the annealing phase ends at
    the new last step; already annealing, the rate (and momentum) anneal from today's values
    to the schedule's final ones at the new last step. (OneCycleLR keeps its phases in
    ``_schedule_phases``, saved and loaded with its state, so the change survives resumes.)
    constant: nothing to change. Not for a schedule that has already ended (``check_resume_settings``
    refuses those: its rate is ~0).
    """
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        scheduler.T_max = total_steps
    elif isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        step = scheduler.last_epoch
        phases = scheduler._schedule_phases
        if step <= phases[0]["end_step"]:
            phases[-1]["end_step"] = float(total_steps - 1)
        else:
            for group in scheduler.optimizer.param_groups:
                group["extension_lr"] = group["lr"]
                if scheduler.cycle_momentum:
                    group["extension_momentum"] = group["betas"][0] if "betas" in group else group["momentum"]
            scheduler._schedule_phases = [
                {"end_step": float(step), "start_lr": "extension_lr", "end_lr": "extension_lr",
                 "start_momentum": "extension_momentum", "end_momentum": "extension_momentum"},
                {"end_step": float(total_steps - 1), "start_lr": "extension_lr", "end_lr": "min_lr",
                 "start_momentum": "extension_momentum", "end_momentum": "max_momentum"},
            ]
        scheduler.total_steps = total_steps


def _final_evaluation(model, data: PreparedData, loss_fn, history: list[dict], best: dict, elapsed: float,
                      description: dict, device, out_dir: Path, extensions: list[dict]) -> dict:
    """Test accuracy and per-sample cost of the best weights; writes results.json and the figures."""
    from scnn.viz.plots import plot_confusion_matrix, plot_training_curves

    test = evaluate(model, *data.test, num_classes=len(data.class_names), loss_fn=loss_fn)
    cost = profile_model(model, data.test[0]) if len(data.test[1]) else None
    row = cost.row() if cost else {}  # Profile.row(): the one flat format of a profile
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "kind": "train",
        "test_accuracy": test["accuracy"],
        "per_class_accuracy": dict(zip(data.class_names, test["per_class_accuracy"])),
        "confusion_matrix": test["confusion"],
        "spike_rate_per_layer": test.get("spike_rate_per_layer", []),
        "num_params": count_parameters(model),
        "best_epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "epochs_run": len(history),
        "schedule_extensions": extensions,
        "wall_time_s": elapsed,
        "seconds_per_epoch": elapsed / max(len(history), 1),
        "split_sizes": {"train": len(data.train[1]), "val": len(data.val[1]), "test": len(data.test[1])},
        "activation_sparsity": row.get("activation_sparsity"),
        "dense_macs_per_sample": row.get("dense_macs"),
        "effective_acs_per_sample": row.get("effective_acs"),
        "effective_macs_per_sample": row.get("effective_macs"),
        "cost": row or None,
        "metrics": cost.to_dict() if cost else None,
        "skipped_files": [{"file": file, "reason": reason} for file, reason in data.skipped],
        "test_set_digest": data.test_set.get("digest"),
        "data_dir": data.data_dir,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "world_size": current_world().world_size,
        "run_config": description["run_config"],
        "config": {k: description[k] for k in ("model", "train_config", "data_config", "feature_config")},
        "versions": library_versions(),
    }
    write_json(out_dir / "results.json", results)
    name = description["train_config"]["model"]
    plot_training_curves(history, out_dir / "training_curves.png", title=name)
    plot_confusion_matrix(test["confusion"], data.class_names, out_dir / "confusion_matrix.png",
                          title=f"{name}: test accuracy {test['accuracy']:.2%}")
    return results


def waveform_batches(data: PreparedData, config: TrainConfig) -> Callable | None:
    """With waveform augmentation on, a function ``(index [B], generator) -> normalised features
    [B, 1, rows, frames]`` (CPU) that augments the training waveforms of ``index`` and computes their
    MFCCs in torch (:class:`scnn.features.torch_mfcc.TorchMFCC`) with the data's normaliser; else None."""
    if not config.waveform_augmentation:
        return None
    from scnn.features.speaker_norm import apply_speaker_norm
    from scnn.features.torch_mfcc import TorchMFCC, fitted_batch
    from scnn.features.wave_augment import (augment_recordings, draw_eq_gains, draw_vtlp, load_noise_folder,
                                            vtlp_matrices)

    recordings = data.train_waveforms
    if recordings is None or len(recordings) != len(data.train[1]):
        raise ValueError("waveform augmentation (train.noise_prob, gain_db, speed, vtlp or eq_db) needs the training "
                         "waveforms: prepare the data with prepare_data(..., keep_waveforms=True)")
    recordings = list(recordings)
    front_end, options, normalizer = TorchMFCC(data.feature_config), config.wave_augment_options(), data.normalizer
    if config.noise_dir:
        options["noise_recordings"] = load_noise_folder(config.noise_dir, data.feature_config.sample_rate)

    def features(index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Noise, gain and speed act on the recordings as read; the silence trim and the centre fit follow,
        # as in the noise evaluation; VTLP warps the spectrum inside the front end.
        noisy = augment_recordings([recordings[i] for i in index.tolist()], generator, **options)
        warp = vtlp_matrices(draw_vtlp(len(noisy), config.vtlp, generator), data.feature_config.n_fft) \
            if config.vtlp else None
        if config.eq_db:  # a random channel response after the warp: power' = diag(gains) @ warp @ power
            gains = draw_eq_gains(len(noisy), config.eq_db, data.feature_config.n_fft // 2 + 1, generator)
            warp = torch.diag_embed(gains) if warp is None else gains[:, :, None] * warp
        with torch.no_grad():
            mfcc = front_end(fitted_batch(noisy, data.feature_config), warp)
        if data.train_speaker_stats is not None:  # data.speaker_norm: the speaker's statistics of the clean features
            mean, scale = data.train_speaker_stats
            mfcc = apply_speaker_norm(mfcc, mean[index], scale[index])
        return normalizer.torch(mfcc).unsqueeze(1)

    return features


def train_epoch(model, optimizer, scheduler, loss_fn, config: TrainConfig, train_x: torch.Tensor,
                 train_y: torch.Tensor, order: torch.Tensor, augmentation: torch.Generator, device, batches,
                 batch_source: Callable | None = None) -> tuple:
    """One pass over the training set in ``order``; returns (mean loss, accuracy) over its samples.

    batches: the start indices of the batches (a tqdm bar over them when progress is shown).
    batch_source: :func:`waveform_batches` (features of augmented waveforms), else the rows of train_x.
    Mixup (config.mixup) mixes the batch after the feature augmentation; the accuracy counts the
    prediction against the first label of each mixed pair.

    Data-parallel (:mod:`scnn.train.distributed`): every process draws and augments the whole global
    batch (so the generators stay alike), runs the model on its slice only, scales that slice's mean
    loss by its share of the batch, and the gradients are summed over the processes before the step.
    """
    model.train()
    world = current_world()
    total_loss, correct = 0.0, 0
    for start in batches:
        index = order[start:start + config.batch_size]
        xb = batch_source(index, augmentation) if batch_source is not None else train_x[index]
        xb = augment_batch(xb, augmentation, config.time_shift, config.time_mask, config.freq_mask)
        yb = train_y[index]
        if config.mixup:
            xb, partner, lam = mixup_batch(xb, augmentation, config.mixup)
            other_yb = yb[partner]
        mine = world.local_slice(len(index))  # the whole batch in a single process
        xb, yb = xb[mine], yb[mine].to(device)
        optimizer.zero_grad(set_to_none=True)
        if len(yb):  # a batch smaller than the world leaves some processes without samples
            output = model(xb.to(device))
            if config.mixup:
                loss = lam * loss_fn(output, yb) + (1 - lam) * loss_fn(output, other_yb[mine].to(device))
            else:
                loss = loss_fn(output, yb)
            (loss * (len(yb) / len(index)) if world.distributed else loss).backward()
            total_loss += loss.item() * len(yb)
            correct += int((output.logits.argmax(1) == yb).sum())
        world.sum_gradients(model)
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        if hasattr(batches, "set_postfix") and len(yb):
            batches.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    total_loss, correct = world.sum_values(total_loss, correct)
    return total_loss / len(train_y), correct / len(train_y)
