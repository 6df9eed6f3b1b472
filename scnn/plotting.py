"""Figures (matplotlib, headless). Every function writes a PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scnn.io import atomic_write  # noqa: E402


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=130, bbox_inches="tight"))
    plt.close(figure)
    return path


def plot_training_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy (train, validation) against epoch."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], label="train")
    if "val_loss" in history[0]:
        loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    accuracy_axis.plot(epochs, [100 * row["train_accuracy"] for row in history], label="train")
    accuracy_axis.plot(epochs, [100 * row["val_accuracy"] for row in history], label="validation")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion_matrix(confusion, class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Counts of true (rows) against predicted (columns) classes."""
    confusion = np.asarray(confusion)
    figure, axis = plt.subplots(figsize=(5.5, 5))
    image = axis.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046, label="recordings")
    ticks = np.arange(len(class_names))
    axis.set(xticks=ticks, yticks=ticks, xticklabels=class_names, yticklabels=class_names,
             xlabel="predicted class", ylabel="true class", title=title or "confusion matrix")
    limit = confusion.max() / 2 if confusion.size else 0
    for (row, column), count in np.ndenumerate(confusion):
        if count:
            axis.text(column, row, int(count), ha="center", va="center", fontsize=8,
                      color="white" if count > limit else "black")
    return _save(figure, path)


def plot_sweep(summary: list[dict], param: str, path: str | Path, title: str = "") -> Path:
    """Test accuracy (left axis) and activation sparsity (right axis) against a swept parameter.

    summary: rows of :func:`scnn.sweeps.summarize_sweep`; error bars are one standard
    deviation over seeds.
    """
    values = [row["value"] for row in summary]
    figure, accuracy_axis = plt.subplots(figsize=(6.5, 4))
    accuracy_axis.errorbar(values, [100 * row["test_accuracy_mean"] for row in summary],
                           yerr=[100 * row["test_accuracy_std"] for row in summary], marker="o", capsize=3,
                           color="tab:blue", label="test accuracy")
    accuracy_axis.set(xlabel=param, ylabel="test accuracy (%)")
    accuracy_axis.grid(alpha=0.3)
    sparsity_axis = accuracy_axis.twinx()
    sparsity_axis.errorbar(values, [100 * row["activation_sparsity_mean"] for row in summary],
                           yerr=[100 * row["activation_sparsity_std"] for row in summary], marker="s", capsize=3,
                           color="tab:orange", label="activation sparsity")
    sparsity_axis.set_ylabel("activation sparsity (% zero spikes)")
    lines = accuracy_axis.get_legend_handles_labels()
    more = sparsity_axis.get_legend_handles_labels()
    accuracy_axis.legend(lines[0] + more[0], lines[1] + more[1], loc="lower center")
    accuracy_axis.set_title(title or f"accuracy and sparsity against {param}")
    return _save(figure, path)


def plot_pareto(points: list[dict], front: list[dict], path: str | Path, title: str = "") -> Path:
    """Validation accuracy against synaptic operations per sample for every trial, Pareto front joined."""
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    axis.scatter([p["synops"] / 1e6 for p in points], [100 * p["val_accuracy"] for p in points], s=18,
                 color="tab:gray", alpha=0.7, label="trials")
    axis.plot([p["synops"] / 1e6 for p in front], [100 * p["val_accuracy"] for p in front], "o-",
              color="tab:red", label="Pareto front")
    axis.set(xlabel="synaptic operations per sample (millions, ACs + MACs)", ylabel="validation accuracy (%)",
             title=title or "accuracy against cost")
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)
