"""Training and evaluation: data preparation, the training loop, checkpoints, results.

The whole loop is :func:`train`; a checkpoint is written atomically after every
epoch with everything needed to continue (weights, optimiser, scheduler, RNG
states, history), so ``resume=True`` reaches the same final weights as an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scnn import data as fsdd
from scnn.augment import augment_batch
from scnn.features import FeatureConfig, Normalizer, extract_features, feature_config
from scnn.io import load_checkpoint, save_checkpoint, write_json, write_text
from scnn.losses import make_loss
from scnn.metrics import profile_model
from scnn.models import count_parameters, create_model, model_from_dict, model_to_dict

CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------- configs


@dataclass
class DataConfig:
    """Where the audio comes from and how it is split.

    data_dir: folder of wavs (None: $SCNN_DATA_DIR, else the per-user cache, downloaded if absent).
    layout: "fsdd" ({digit}_{speaker}_{index}.wav) or "folders" (root/<label>/*.wav).
    split: "official" | "speaker" | "random"; holdout_speaker for "speaker"; test_fraction for "random".
    val_fraction: share of train carved out (stratified, seeded by split_seed) for validation.
    feature_preset + feature_overrides: see :mod:`scnn.features`.
    cache_dir: feature cache (None: <user cache>/features); skip_bad: leave unreadable files out.
    train_per_class: keep only the first N training recordings of each class (0: all), for quick runs.
    """

    data_dir: str | None = None
    layout: str = "fsdd"
    split: str = "official"
    holdout_speaker: str = "theo"
    test_fraction: float = 0.1
    val_fraction: float = 0.1
    split_seed: int = 0
    feature_preset: str = "default"
    feature_overrides: dict = field(default_factory=dict)
    cache_dir: str | None = None
    skip_bad: bool = False
    download: bool = True
    train_per_class: int = 0

    def features(self) -> FeatureConfig:
        return feature_config(self.feature_preset, **self.feature_overrides)


@dataclass
class TrainConfig:
    """How a model is trained (one flat object, printed at the start and saved everywhere).

    optimizer: "adam" | "adamw"; lr: learning rate; weight_decay: L2 (adam) / decoupled (adamw).
    schedule: "cosine" | "onecycle" | "constant", stepped per batch.
    grad_clip: max gradient norm (0: off). loss: see :mod:`scnn.losses`.
    patience: early stopping after this many epochs without a better validation accuracy (0: off).
    threads: torch CPU threads (0: torch's default). device: "auto" | "cpu" | "cuda" | "cuda:N".
    tf32: allow TensorFloat-32 on CUDA (faster, but not the float32 model; see resolve_device).
    time_shift, time_mask, freq_mask: training-batch augmentation in frames/coefficients (see scnn.augment).
    """

    model: str = "model_b"
    model_overrides: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    grad_clip: float = 1.0
    loss: str = "ce_membrane"
    seed: int = 0
    patience: int = 0
    threads: int = 0
    device: str = "auto"
    tf32: bool = False
    time_shift: int = 3
    time_mask: int = 4
    freq_mask: int = 4


def resolve_device(name: str = "auto", tf32: bool = False) -> torch.device:
    """"auto" picks CUDA when available, else the CPU.

    On CUDA, TF32 (10-bit mantissa) convolutions and matmuls are switched off unless
    ``tf32``: PyTorch enables them for cuDNN by default, and on an H200 they changed 5.5 %
    of Model A's spikes against the snntorch reference and the CPU (membranes off by
    0.66); in full float32 the GPU matched both to 5e-7 and no spike differed.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine (use auto or cpu)")
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    return device


# --------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    """Normalised features ``x`` [N, 1, rows, frames] float32 and labels ``y`` [N] per split."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    class_names: list[str]
    normalizer: Normalizer
    feature_config: FeatureConfig
    data_dir: str
    skipped: list = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])


def prepare_data(config: DataConfig, normalizer: Normalizer | None = None, progress: bool = True) -> PreparedData:
    """Find the audio, split it, extract (or load cached) MFCCs and normalise them.

    The normaliser is fitted on the training part only, unless one is given
    (evaluation of a checkpoint reuses the one it was trained with).
    """
    features_config = config.features()
    if config.layout == "fsdd":
        root = fsdd.locate_fsdd(config.data_dir, download=config.download)
        recordings = fsdd.list_fsdd(root)
        class_names = list(fsdd.FSDD_DIGITS)
    elif config.layout == "folders":
        if config.data_dir is None:
            raise ValueError("layout 'folders' needs --data-dir pointing at root/<label>/*.wav")
        root = Path(config.data_dir)
        recordings, class_names = fsdd.list_class_folders(root)
    else:
        raise ValueError(f"unknown data layout {config.layout!r}; choose 'fsdd' or 'folders'")
    split = fsdd.split_recordings(
        recordings, split=config.split, val_fraction=config.val_fraction, seed=config.split_seed,
        holdout_speaker=config.holdout_speaker, test_fraction=config.test_fraction,
    )
    if config.train_per_class:
        split = fsdd.Split(train=_first_per_class(split.train, config.train_per_class), val=split.val, test=split.test)
    cache_dir = Path(config.cache_dir) if config.cache_dir else fsdd.default_cache_dir() / "features"
    everything = split.train + split.val + split.test
    extracted = extract_features([r.path for r in everything], features_config, cache_dir=cache_dir,
                                 skip_bad=config.skip_bad, progress=progress)
    row_of = {path: row for row, path in enumerate(extracted.paths)}

    def tensors(part):
        kept = [r for r in part if str(r.path) in row_of]
        x = extracted.features[[row_of[str(r.path)] for r in kept]] if kept else np.zeros((0, *features_config.shape), np.float32)
        y = torch.tensor([r.label for r in kept], dtype=torch.long)
        return x, y

    train_x, train_y = tensors(split.train)
    if len(train_y) == 0:
        raise ValueError(f"no training recordings left in {root} after the {config.split!r} split"
                         + (" and --skip-bad" if config.skip_bad else ""))
    if normalizer is None:
        normalizer = Normalizer.fit(train_x, enabled=features_config.normalize)
    parts = [tensors(split.train), tensors(split.val), tensors(split.test)]
    parts = [(torch.from_numpy(normalizer(x)).unsqueeze(1), y) for x, y in parts]
    return PreparedData(*parts, class_names=class_names, normalizer=normalizer, feature_config=features_config,
                        data_dir=str(root), skipped=extracted.skipped)


def _first_per_class(recordings: list, limit: int) -> list:
    counts: dict[int, int] = {}
    kept = []
    for recording in recordings:
        counts[recording.label] = counts.get(recording.label, 0) + 1
        if counts[recording.label] <= limit:
            kept.append(recording)
    return kept


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch_size: int = 256,
             loss_fn=None) -> dict:
    """Accuracy, loss, confusion matrix ``[true, predicted]`` and mean spike rate per LIF layer."""
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    spike_sums, total_loss, count = None, 0.0, len(y)
    for start in range(0, count, batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        output = model(xb, record=True) if _is_spiking(model) else model(xb)
        if loss_fn is not None:
            total_loss += float(loss_fn(output, yb)) * len(yb)
        predicted = output.logits.argmax(1)
        confusion += torch.bincount(yb.cpu() * num_classes + predicted.cpu(), minlength=num_classes ** 2).reshape(
            num_classes, num_classes)
        rates = [float(s.float().sum()) for s in output.layer_spikes]
        spike_sums = rates if spike_sums is None else [a + b for a, b in zip(spike_sums, rates)]
        sizes = [s[0, 0].numel() * s.shape[0] for s in output.layer_spikes]  # neurons x steps per sample
    result = {"accuracy": float(confusion.diag().sum()) / max(count, 1), "confusion": confusion.tolist()}
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float()
    result["per_class_accuracy"] = per_class.tolist()
    if loss_fn is not None:
        result["loss"] = total_loss / max(count, 1)
    if spike_sums:
        result["spike_rate_per_layer"] = [s / (size * count) for s, size in zip(spike_sums, sizes)]
    return result


def _is_spiking(model: nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "spiking", False))


# --------------------------------------------------------------------------- training loop


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


def library_versions() -> dict:
    import librosa
    import snntorch

    return {"python": platform.python_version(), "torch": torch.__version__, "snntorch": snntorch.__version__,
            "librosa": librosa.__version__, "numpy": np.__version__, "platform": platform.platform()}


def train(train_config: TrainConfig, data_config: DataConfig, out_dir: str | Path, resume: bool = False,
          progress: bool = True, stop_after_epochs: int | None = None, data: PreparedData | None = None,
          epoch_callback=None) -> dict:
    """Train, checkpoint every epoch, evaluate the best-validation weights on test, write results.

    out_dir receives: ``last.pt`` (resumable checkpoint), ``best.pt`` (best validation
    weights, what ``evaluate.py`` loads), ``metrics.csv`` and ``metrics.jsonl`` (one row
    per epoch), ``results.json``, ``training_curves.png``, ``confusion_matrix.png``.
    stop_after_epochs: return after this many epochs of this call (a deliberate
    interruption; ``resume=True`` continues). epoch_callback(row, model) is called after
    each epoch, once the checkpoint is written, with the metrics row and the model (the
    Ray Tune trainable reports from it).
    Returns the results dict (``test_accuracy`` is a fraction).
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    device = resolve_device(train_config.device, train_config.tf32)
    if device.type == "cpu":
        from scnn.engine import keep_freed_memory

        keep_freed_memory()  # large activation buffers reused, not page-faulted in every step
    last_path = out_dir / "last.pt"
    checkpoint = load_checkpoint(last_path) if resume and last_path.exists() else None
    if resume and checkpoint is None and progress:
        print(f"--resume: no checkpoint at {last_path}, starting from scratch")

    if data is None:
        normalizer = Normalizer.from_state_dict(checkpoint["normalizer"]) if checkpoint else None
        data = prepare_data(data_config, normalizer=normalizer, progress=progress)
    torch.manual_seed(train_config.seed)
    model = create_model(train_config.model, input_shape=data.input_shape, num_classes=len(data.class_names),
                         **train_config.model_overrides)
    model.to(device)
    train_x, train_y = data.train
    optimizer, scheduler, loss_fn, shuffle, augmentation = training_parts(train_config, model, len(train_y))
    history, best = [], {"val_accuracy": -1.0, "epoch": -1, "state": None}
    start_epoch, elapsed = 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        scheduler.load_state_dict(checkpoint["scheduler_state"])
        shuffle.set_state(checkpoint["rng"]["shuffle"])
        augmentation.set_state(checkpoint["rng"]["augmentation"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        history, best, start_epoch = checkpoint["history"], checkpoint["best"], checkpoint["epoch"] + 1
        elapsed = checkpoint["elapsed_s"]

    description = {
        "model": model_to_dict(model), "train_config": asdict(train_config), "data_config": asdict(data_config),
        "feature_config": asdict(data.feature_config), "normalizer": data.normalizer.state_dict(),
        "class_names": data.class_names, "checkpoint_version": CHECKPOINT_VERSION,
    }
    if progress and start_epoch == 0:
        print(json.dumps({k: description[k] for k in ("model", "train_config", "data_config")}, indent=1))
    num_classes = len(data.class_names)
    epochs_this_call = 0
    for epoch in range(start_epoch, train_config.epochs):
        epoch_start = time.perf_counter()
        order = torch.randperm(len(train_y), generator=shuffle)
        bar = tqdm(range(0, len(order), train_config.batch_size), desc=f"epoch {epoch + 1}/{train_config.epochs}",
                   leave=False, disable=not progress, mininterval=1.0)
        train_loss, train_accuracy = _train_epoch(model, optimizer, scheduler, loss_fn, train_config, train_x,
                                                  train_y, order, augmentation, device, bar)
        train_time = time.perf_counter() - epoch_start
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
               "lr": optimizer.param_groups[0]["lr"], "train_time_s": train_time}
        if len(data.val[1]):
            val = evaluate(model, *data.val, num_classes=num_classes, loss_fn=loss_fn)
            row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            row.update({f"val_spike_rate_{i}": r for i, r in enumerate(val.get("spike_rate_per_layer", []))})
        else:
            row["val_accuracy"] = row["train_accuracy"]
        elapsed += time.perf_counter() - epoch_start
        row["epoch_time_s"] = time.perf_counter() - epoch_start
        history.append(row)
        # Best = highest validation accuracy; among equals, the lowest validation loss.
        score = (row["val_accuracy"], -row.get("val_loss", 0.0))
        if score > (best["val_accuracy"], -best.get("val_loss", 0.0)):
            best = {"val_accuracy": row["val_accuracy"], "val_loss": row.get("val_loss", 0.0), "epoch": epoch + 1,
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        checkpoint = {
            **description, "epoch": epoch, "elapsed_s": elapsed, "history": history, "best": best,
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "rng": {"shuffle": shuffle.get_state(), "augmentation": augmentation.get_state(),
                    "torch": torch.get_rng_state()},
        }
        save_checkpoint(last_path, checkpoint)
        save_checkpoint(out_dir / "best.pt", {**description, "epoch": best["epoch"] - 1, "model_state": best["state"]})
        _write_history(out_dir, history)
        if progress:
            print(f"epoch {epoch + 1:3d}  loss {row['train_loss']:.4f}  train {row['train_accuracy']:.4f}  "
                  f"val {row['val_accuracy']:.4f}  {row['epoch_time_s']:.1f}s")
        if epoch_callback is not None:
            epoch_callback(row, model)
        epochs_this_call += 1
        stale = epoch + 1 - best["epoch"]
        if train_config.patience and stale >= train_config.patience:
            if progress:
                print(f"early stopping: no better validation accuracy for {stale} epochs")
            break
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            return {"interrupted_after_epoch": epoch + 1}

    model.load_state_dict(best["state"])
    results = _final_evaluation(model, data, loss_fn, history, best, elapsed, description, device, out_dir)
    if progress:
        print(f"test accuracy {results['test_accuracy']:.4f} (best validation epoch {best['epoch']}); "
              f"results in {out_dir}")
    return results


def _final_evaluation(model, data: PreparedData, loss_fn, history: list[dict], best: dict, elapsed: float,
                      description: dict, device, out_dir: Path) -> dict:
    """Test accuracy and per-sample cost of the best weights; writes results.json and the figures."""
    from scnn.plotting import plot_confusion_matrix, plot_training_curves

    test = evaluate(model, *data.test, num_classes=len(data.class_names), loss_fn=loss_fn)
    cost = profile_model(model, data.test[0]) if len(data.test[1]) else None
    results = {
        "test_accuracy": test["accuracy"],
        "per_class_accuracy": dict(zip(data.class_names, test["per_class_accuracy"])),
        "confusion_matrix": test["confusion"],
        "spike_rate_per_layer": test.get("spike_rate_per_layer", []),
        "num_params": count_parameters(model),
        "best_epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "epochs_run": len(history),
        "wall_time_s": elapsed,
        "seconds_per_epoch": elapsed / max(len(history), 1),
        "split_sizes": {"train": len(data.train[1]), "val": len(data.val[1]), "test": len(data.test[1])},
        "activation_sparsity": cost.activation_sparsity["overall"] if cost else None,
        "dense_macs_per_sample": cost.dense_macs["as_executed"] if cost else None,
        "effective_acs_per_sample": cost.synaptic_operations["effective_acs"] if cost else None,
        "effective_macs_per_sample": cost.synaptic_operations["effective_macs"] if cost else None,
        "metrics": cost.to_dict() if cost else None,
        "skipped_files": data.skipped,
        "data_dir": data.data_dir,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "config": {k: description[k] for k in ("model", "train_config", "data_config", "feature_config")},
        "versions": library_versions(),
    }
    write_json(out_dir / "results.json", results)
    name = description["train_config"]["model"]
    plot_training_curves(history, out_dir / "training_curves.png", title=name)
    plot_confusion_matrix(test["confusion"], data.class_names, out_dir / "confusion_matrix.png",
                          title=f"{name}: test accuracy {test['accuracy']:.2%}")
    return results


def _train_epoch(model, optimizer, scheduler, loss_fn, config: TrainConfig, train_x: torch.Tensor,
                 train_y: torch.Tensor, order: torch.Tensor, augmentation: torch.Generator, device, batches) -> tuple:
    """One pass over the training set in ``order``; returns (mean loss, accuracy) over its samples.

    batches: the start indices of the batches (a tqdm bar over them when progress is shown).
    """
    model.train()
    total_loss, correct = 0.0, 0
    for start in batches:
        index = order[start:start + config.batch_size]
        xb = augment_batch(train_x[index], augmentation, config.time_shift, config.time_mask,
                           config.freq_mask).to(device)
        yb = train_y[index].to(device)
        output = model(xb)
        loss = loss_fn(output, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(yb)
        correct += int((output.logits.argmax(1) == yb).sum())
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return total_loss / len(train_y), correct / len(train_y)


def _write_history(out_dir: Path, history: list[dict]) -> None:
    """metrics.jsonl and metrics.csv, rewritten whole from the history (no duplicates after resume)."""
    write_text(out_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(out_dir / "metrics.csv", buffer.getvalue())


# --------------------------------------------------------------------------- checkpoints


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint alone; returns (model in eval mode, checkpoint dict)."""
    checkpoint = load_checkpoint(path)
    for key in ("model", "model_state", "data_config", "normalizer"):
        if key not in checkpoint:
            raise ValueError(f"checkpoint {path} lacks '{key}': not written by scnn's trainer")
    model = model_from_dict(checkpoint["model"])
    model.load_state_dict(checkpoint["model_state"])
    return model.to(device).eval(), checkpoint


def evaluate_checkpoint(path: str | Path, out_dir: str | Path, data_overrides: dict | None = None,
                        device: str = "auto", progress: bool = True) -> dict:
    """Evaluate a checkpoint on its test split (or another, via ``data_overrides``); write results and figure."""
    from scnn.plotting import plot_confusion_matrix

    model, checkpoint = load_trained_model(path, resolve_device(device))
    data_config = DataConfig(**{**checkpoint["data_config"], **(data_overrides or {})})
    data = prepare_data(data_config, normalizer=Normalizer.from_state_dict(checkpoint["normalizer"]), progress=progress)
    expected = tuple(checkpoint["model"]["config"].get("input_shape", data.input_shape))
    if data.input_shape != expected:
        raise ValueError(f"features have shape {data.input_shape} but checkpoint {path} expects {expected}")
    start = time.perf_counter()
    test = evaluate(model, *data.test, num_classes=len(data.class_names))
    results = {
        "checkpoint": str(path),
        "test_accuracy": test["accuracy"],
        "per_class_accuracy": dict(zip(data.class_names, test["per_class_accuracy"])),
        "confusion_matrix": test["confusion"],
        "spike_rate_per_layer": test.get("spike_rate_per_layer", []),
        "num_params": count_parameters(model),
        "num_test": len(data.test[1]),
        "epochs_run": checkpoint.get("epoch", -1) + 1,
        "wall_time_s": time.perf_counter() - start,
        "config": {"model": checkpoint["model"], "data_config": asdict(data_config),
                   "train_config": checkpoint.get("train_config")},
        "versions": library_versions(),
    }
    out_dir = Path(out_dir)
    write_json(out_dir / "results.json", results)
    plot_confusion_matrix(test["confusion"], data.class_names, out_dir / "confusion_matrix.png",
                          title=f"{Path(path).name}: test accuracy {test['accuracy']:.2%}")
    return results
