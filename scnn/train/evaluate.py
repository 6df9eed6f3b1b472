"""Evaluation: accuracy, confusion and spike rates of a model; checkpoints rebuilt and evaluated."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from scnn.data.prepare import DataConfig, checkpoint_data
from scnn.io import load_checkpoint, write_json
from scnn.models.registry import count_parameters, is_spiking, model_from_dict
from scnn.train.config import resolve_device

# Version 1: the first release (flat modules, DataConfig.layout); it loads as it is.
# Version 2: configs under scnn.* packages, DataConfig.dataset, the run config saved as run_config.
CHECKPOINT_VERSION = 2
from scnn.train.run import library_versions


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
        output = model(xb, record=True) if is_spiking(model) else model(xb)
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



def evaluate_checkpoint(path: str | Path, out_dir: str | Path, data_overrides: dict | None = None,
                        device: str = "auto", progress: bool = True) -> dict:
    """Evaluate a checkpoint on its test split (or another, via ``data_overrides``); write results and figure."""
    from scnn.viz.plots import plot_confusion_matrix

    model, checkpoint = load_trained_model(path, resolve_device(device))
    data = checkpoint_data(checkpoint, data_overrides, progress)
    data_config = DataConfig.from_dict({**checkpoint["data_config"], **(data_overrides or {})})
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

