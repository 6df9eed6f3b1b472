"""Evaluation: accuracy, confusion and spike rates of a model; checkpoints rebuilt and evaluated."""

from __future__ import annotations

import csv
import dataclasses
import io
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from scnn.data.prepare import DataConfig, checkpoint_data, compare_test_sets
from scnn.io import load_checkpoint, write_json, write_text
from scnn.models.registry import count_parameters, is_spiking, model_from_dict
from scnn.train.config import TrainConfig, resolve_device

# Version 1: the first release (flat modules, DataConfig.layout); it loads as it is.
# Version 2: configs under scnn.* packages, DataConfig.dataset, the run config saved as run_config.
CHECKPOINT_VERSION = 2
from scnn.train.run import RESULTS_SCHEMA_VERSION, library_versions


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch_size: int = 256,
             loss_fn=None, return_logits: bool = False) -> dict:
    """Accuracy, loss, confusion matrix ``[true, predicted]`` and mean spike rate per LIF layer;
    with ``return_logits`` also ``"logits"``, the model's logits ``[N, classes]`` on the CPU (the
    prediction of row i is their arg-max)."""
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    spike_sums, total_loss, count, logits = None, 0.0, len(y), []
    for start in range(0, count, batch_size):
        xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
        output = model(xb, record=True) if is_spiking(model) else model(xb)
        if loss_fn is not None:
            total_loss += float(loss_fn(output, yb)) * len(yb)
        if return_logits:
            logits.append(output.logits.detach().float().cpu())
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
    if return_logits:
        result["logits"] = torch.cat(logits) if logits else torch.zeros(0, num_classes)
    return result




def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint alone; returns (model in eval mode, checkpoint dict)."""
    checkpoint = load_checkpoint(path)
    for key in ("model", "model_state", "data_config", "normalizer"):
        if key not in checkpoint:
            raise ValueError(f"checkpoint {path} lacks '{key}': not written by scnn's trainer")
    version = checkpoint.get("checkpoint_version", 1)
    if version > CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} has format version {version}, newer than this scnn reads "
                         f"({CHECKPOINT_VERSION}): upgrade scnn (pip install -U scnn) to load it")
    model = model_from_dict(checkpoint["model"])
    model.load_state_dict(checkpoint["model_state"])
    return model.to(device).eval(), checkpoint


def checkpoint_run_config(checkpoint: dict, data_overrides: dict | None = None,
                          train: TrainConfig | None = None) -> dict | None:
    """The run config a checkpoint was trained with, as ``results.json`` keeps it (``RunConfig.to_dict()``:
    sections model, data, train): its ``data`` section with ``data_overrides`` applied as
    :func:`scnn.data.prepare.checkpoint_data` applies them (None values ignored: the data as a run read it),
    its ``train`` section replaced by ``train`` if given (the training an adaptation did). None, with a
    warning, if the checkpoint's config no longer loads into this version's dataclasses (the results are
    written all the same)."""
    from scnn.train.run_config import RunConfig

    try:
        run = RunConfig.from_checkpoint(checkpoint)
        given = {key: value for key, value in (data_overrides or {}).items() if value is not None}
        changes = {"data": DataConfig.from_dict({**checkpoint["data_config"], **given})}
    except (ValueError, KeyError, TypeError) as error:
        warnings.warn(f"the checkpoint's run config does not load ({error}); results record run_config: null",
                      stacklevel=2)
        return None
    if train is not None:
        changes["train"] = train
    return dataclasses.replace(run, **changes).to_dict()


def evaluate_checkpoint(path: str | Path, out_dir: str | Path, data_overrides: dict | None = None,
                        device: str = "auto", progress: bool = True) -> dict:
    """Evaluate a checkpoint on its test split (or another, via ``data_overrides``).

    Writes into ``out_dir``: ``results.json`` (keys: docs/results_schema.md), ``predictions.csv``
    (one row per test recording, :func:`write_predictions`) and ``confusion_matrix.png``, drawn from
    those predictions. An empty test split is refused (ValueError) before anything is written; a
    test split that differs from the one the checkpoint recorded (files missing or added, content
    changed) is evaluated with a warning per difference, also kept in ``results.json``.
    """
    from scnn.viz.plots import plot_confusion_matrix

    model, checkpoint = load_trained_model(path, resolve_device(device))
    data = checkpoint_data(checkpoint, data_overrides, progress)
    data_config = DataConfig.from_dict({**checkpoint["data_config"], **(data_overrides or {})})
    expected = tuple(checkpoint["model"]["config"].get("input_shape", data.input_shape))
    if data.input_shape != expected:
        raise ValueError(f"features have shape {data.input_shape} but checkpoint {path} expects {expected}")
    recorded = checkpoint.get("test_set") or {}
    if len(data.test[1]) == 0:
        had = f" (the checkpoint recorded {len(recorded['files'])})" if recorded.get("files") else ""
        raise ValueError(f"checkpoint {path}: no test recordings found in {data.data_dir}{had}; nothing to evaluate")
    differences = compare_test_sets(recorded, data.test_set)
    for line in differences:
        warnings.warn(f"{path}: {line}", stacklevel=2)
    start = time.perf_counter()
    test = evaluate(model, *data.test, num_classes=len(data.class_names), return_logits=True)
    out_dir = Path(out_dir)
    predictions = test["logits"].argmax(1)
    write_predictions(out_dir / "predictions.csv", data.test_files, data.test[1], predictions, test["logits"],
                      data.class_names)
    confusion = confusion_matrix(data.test[1], predictions, len(data.class_names))
    accuracy = float(confusion.diag().sum()) / len(predictions)
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float()
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "kind": "evaluate",
        "checkpoint": str(path),
        "test_accuracy": accuracy,
        "per_class_accuracy": dict(zip(data.class_names, per_class.tolist())),
        "confusion_matrix": confusion.tolist(),
        "spike_rate_per_layer": test.get("spike_rate_per_layer", []),
        "num_params": count_parameters(model),
        "num_test": len(data.test[1]),
        "epochs_run": checkpoint.get("epoch", -1) + 1,
        "wall_time_s": time.perf_counter() - start,
        "test_set": {"digest": data.test_set.get("digest"), "recorded_digest": recorded.get("digest"),
                     "differences": differences},
        "skipped_files": [{"file": file, "reason": reason} for file, reason in data.skipped],
        "data_dir": data.data_dir,
        "run_config": checkpoint_run_config(checkpoint, data_overrides),
        "config": {"model": checkpoint["model"], "data_config": asdict(data_config),
                   "train_config": checkpoint.get("train_config")},
        "versions": library_versions(),
    }
    write_json(out_dir / "results.json", results)
    plot_confusion_matrix(confusion.tolist(), data.class_names, out_dir / "confusion_matrix.png",
                          title=f"{Path(path).name}: test accuracy {accuracy:.2%}")
    return results


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``[true, predicted]`` (int64 ``[classes, classes]``) of two label vectors ``[N]``."""
    pairs = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def write_predictions(path: str | Path, files: list[str], labels: torch.Tensor, predictions: torch.Tensor,
                      logits: torch.Tensor, class_names: list[str]) -> Path:
    """``predictions.csv``: one row per recording, columns ``file, label, prediction, score_<class>...``.

    file: the recording's path as it was read; label, prediction: class names (the true class, the
    predicted one: the arg-max of the scores); score_<class>: the model's logit for that class (for a spiking model
    with the membrane readout, the output layer's membrane summed over the time steps). Written
    atomically; the rows are in the order of ``files``.
    """
    if not len(files) == len(labels) == len(predictions) == len(logits):
        raise ValueError(f"predictions: {len(files)} files, {len(labels)} labels, {len(predictions)} predictions, "
                         f"{len(logits)} rows of logits")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", "prediction", *[f"score_{name}" for name in class_names]])
    for file, label, prediction, scores in zip(files, labels.tolist(), predictions.tolist(), logits.tolist()):
        writer.writerow([file, class_names[label], class_names[prediction], *[repr(float(v)) for v in scores]])
    return write_text(path, buffer.getvalue())
