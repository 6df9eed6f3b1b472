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
    # Markers, so that a one-epoch run still shows its point.
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", ms=3, label="train")
    if "val_loss" in history[0]:
        loss_axis.plot(epochs, [row["val_loss"] for row in history], "o-", ms=3, label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss (mean per sample)", title="loss")
    accuracy_axis.plot(epochs, [100 * row["train_accuracy"] for row in history], "o-", ms=3, label="train")
    accuracy_axis.plot(epochs, [100 * row["val_accuracy"] for row in history], "o-", ms=3, label="validation")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
        if len(epochs) <= 12:
            axis.set_xticks(epochs)
        else:
            axis.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_text(value) -> str:
    """A swept value as a label: numbers in ``%g``, anything else (strings, lists) as written."""
    return f"{value:g}" if _is_number(value) else str(value)


def plot_sweep(summary: list[dict], param: str, path: str | Path, title: str = "") -> Path:
    """Test accuracy (left axis) and activation sparsity (right axis) against a swept parameter.

    summary: rows of :func:`scnn.search.sweep.summarize_sweep`; error bars are one standard
    deviation over seeds. Rows of another parameter (a folder of mixed sweeps) are left out.
    """
    summary = [row for row in summary if row.get("param", param) == param]
    values = [row["value"] for row in summary]
    numeric = all(_is_number(value) for value in values)
    if not numeric:  # strings or lists (a surrogate, a layer list): one evenly spaced tick each, in sweep order
        values = list(range(len(summary)))
    figure, accuracy_axis = plt.subplots(figsize=(6.5, 4))
    accuracy_axis.errorbar(values, [100 * row["test_accuracy_mean"] for row in summary],
                           yerr=[100 * row["test_accuracy_std"] for row in summary], marker="o", capsize=3,
                           color="tab:blue", label="test accuracy")
    accuracy_axis.set(xlabel=param, ylabel="test accuracy (%)")
    if not numeric:
        accuracy_axis.set_xticks(values, [_value_text(row["value"]) for row in summary])
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


def plot_sweeps_sparsity_accuracy(series: dict[str, list[dict]], param: str, path: str | Path,
                                  title: str = "", failed_below: float = 0.5) -> Path:
    """Test accuracy against activation sparsity for several models swept over the same parameter.

    series: model name -> rows of :func:`scnn.search.sweep.summarize_sweep` (means and standard
    deviations over seeds, drawn as error bars); each point is labelled with its value.
    Points below ``failed_below`` accuracy (networks that did not learn, e.g. silent ones)
    would squash the rest: they are drawn as crosses on the lower edge, their accuracy printed.
    """
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    learned = [100 * row["test_accuracy_mean"] for summary in series.values() for row in summary
               if row["test_accuracy_mean"] >= failed_below]
    bottom = min(learned) - 1.5 if learned else 0.0
    for (name, summary), marker, colour in zip(series.items(), "osD^v<>", plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        good = [row for row in summary if row["test_accuracy_mean"] >= failed_below]
        x = [100 * row["activation_sparsity_mean"] for row in good]
        y = [100 * row["test_accuracy_mean"] for row in good]
        seeds = summary[0]["seeds"]
        axis.errorbar(x, y, xerr=[100 * row["activation_sparsity_std"] for row in good],
                      yerr=[100 * row["test_accuracy_std"] for row in good], marker=marker, capsize=3, color=colour,
                      label=f"{name} ({seeds} seed{'s' if seeds > 1 else ''} per point)")
        for row, x_value, y_value in zip(good, x, y):
            axis.annotate(_value_text(row["value"]), (x_value, y_value), textcoords="offset points", xytext=(4, 4),
                          fontsize=8, color=colour)
        for row in summary:
            if row["test_accuracy_mean"] < failed_below:
                x_value = 100 * row["activation_sparsity_mean"]
                axis.plot([x_value], [bottom + 0.15], marker="x", color=colour, markersize=9, clip_on=False)
                axis.annotate(f"{param} {_value_text(row['value'])}: {100 * row['test_accuracy_mean']:.0f} %", (x_value, bottom),
                              textcoords="offset points", xytext=(3, 8), fontsize=7, color=colour, rotation=90)
    axis.set_ylim(bottom=bottom)
    axis.set(xlabel="activation sparsity (% zero spikes, test set)", ylabel="test accuracy (%)",
             title=title or f"accuracy against sparsity, {param} swept (labels: {param})")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    if len(learned) < sum(len(summary) for summary in series.values()):
        axis.text(0.01, 0.01, "x: did not learn (accuracy printed)", transform=axis.transAxes, fontsize=7)
    return _save(figure, path)


# Axis label and scale of every per-trial/per-run quantity the scatter plots use.
QUANTITIES = {
    "synops": ("synaptic operations per sample (millions, ACs + MACs)", 1e-6),
    "activation_sparsity": ("activation sparsity (% zero spikes)", 100),
    "val_accuracy": ("validation accuracy (%)", 100),
    "test_accuracy": ("test accuracy (%)", 100),
}


def plot_pareto(points: list[dict], front: list[dict], path: str | Path, title: str = "", x: str = "synops",
                y: str = "val_accuracy", points_label: str = "trials", annotate: str | None = None) -> Path:
    """One quantity against another for every trial, the Pareto front (computed by the caller) joined.

    x, y: keys of the points, among :data:`QUANTITIES` (accuracy against SynOps per sample by
    default; ``x="activation_sparsity"`` for accuracy against sparsity). annotate: a key whose
    value is written beside every point (e.g. the swept parameter).
    """
    (x_label, x_scale), (y_label, y_scale) = QUANTITIES[x], QUANTITIES[y]
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    axis.scatter([x_scale * p[x] for p in points], [y_scale * p[y] for p in points], s=18,
                 color="tab:gray", alpha=0.7, label=points_label)
    for point in points if annotate else []:
        axis.annotate(f"{annotate}={point[annotate]:g}", (x_scale * point[x], y_scale * point[y]), fontsize=7,
                      textcoords="offset points", xytext=(4, 4))
    axis.plot([x_scale * p[x] for p in front], [y_scale * p[y] for p in front], "o-",
              color="tab:red", label="Pareto front")
    axis.set(xlabel=x_label, ylabel=y_label, title=title or "accuracy against cost")
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)


# --------------------------------------------------------------------------- one sample through a spiking model


def _panels(count: int, width: float = 3.6, height: float = 3.4, per_row: int = 3):
    """A figure with ``count`` panels, at most ``per_row`` to a row; returns (figure, axes in order)."""
    rows, columns = (count + per_row - 1) // per_row, min(count, per_row)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat[:count])


def plot_spike_raster(spikes: dict, path: str | Path, title: str = "", max_rows: int = 300) -> Path:
    """Spike raster of one sample, one panel per layer: a black cell at (step, neuron) for every spike.

    spikes: layer label -> 0/1 array ``[T, neurons]`` (e.g. :func:`scnn.viz.dynamics.record_sample`);
    conv neurons are numbered channel by channel. A layer of more than ``max_rows`` neurons is
    drawn in rows of ``ceil(neurons / max_rows)`` neighbours, grey = the share of them that spiked.
    """
    figure, axes = _panels(len(spikes), height=3.8)
    for axis, (label, layer) in zip(axes, spikes.items()):
        layer = np.asarray(layer, dtype=float)
        steps, neurons = layer.shape
        group = -(-neurons // max_rows)
        padded = np.pad(layer, ((0, 0), (0, -neurons % group)), constant_values=np.nan)
        rows = np.nanmean(padded.reshape(steps, -1, group), axis=2)
        axis.imshow(rows.T, aspect="auto", cmap="Greys", vmin=0, vmax=1, origin="lower", interpolation="nearest",
                    extent=(-0.5, steps - 0.5, -0.5, neurons - 0.5))
        if group > 1:
            axis.text(0.02, 0.98, f"{group} neurons per row", transform=axis.transAxes, va="top", fontsize=8,
                      bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
        axis.set(xlabel="time step", ylabel="neuron index",
                 title=f"layer {label}: {neurons:,} neurons\nspikes at {100 * layer.mean():.1f} % of neuron-steps")
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title or "spike raster (one sample; black: spike)")
    figure.tight_layout()
    return _save(figure, path)


def plot_firing_rates(rates: dict, path: str | Path, num_steps: int | None = None, title: str = "") -> Path:
    """Histogram of firing rates (spikes per neuron per step), one panel per layer, log count axis.

    rates: layer label -> ``[neurons]`` (:func:`scnn.metrics.firing_rates`); num_steps: T, to put
    one bin at each rate one sample can have (k / T), else 20 bins over [0, 1].
    """
    figure, axes = _panels(len(rates))
    bins = (np.arange(num_steps + 2) - 0.5) / num_steps if num_steps else np.linspace(0, 1, 21)
    for axis, (label, layer) in zip(axes, rates.items()):
        layer = np.asarray(layer, dtype=float)
        # Most neurons of a big layer are silent: a log count axis keeps the rest visible.
        axis.hist(layer, bins=bins, color="tab:blue", edgecolor="white", log=len(layer) > 100)
        if len(layer) <= 100:
            axis.yaxis.get_major_locator().set_params(integer=True)
        axis.set(xlim=(bins[0], bins[-1]), xlabel="firing rate (spikes per neuron per step)",
                 ylabel="neurons", title=f"layer {label}\nsilent {100 * np.mean(layer == 0):.1f} %, "
                                         f"mean rate {layer.mean():.3f}")
        axis.grid(alpha=0.3)
    figure.suptitle(title or "firing rates per layer")
    figure.tight_layout()
    return _save(figure, path)


def plot_membrane_traces(membranes: dict, path: str | Path, thresholds: dict | None = None,
                         spikes: dict | None = None, neurons_per_layer: int = 5, class_names: list[str] | None = None,
                         title: str = "") -> Path:
    """Membrane potential against time step for a few neurons of each layer, threshold dashed.

    membranes (and spikes): layer label -> ``[T, neurons]``. Per layer ``neurons_per_layer``
    neurons are drawn, spikes marked with dots: spread evenly over the spiking neurons ranked by
    spike count (from the busiest to the quietest), topped up with the silent ones closest to
    the threshold. The last layer (the classifier) shows every class, named by ``class_names``.
    """
    figure, axes = _panels(len(membranes), width=4.2, height=4.4)
    last = list(membranes)[-1]
    for axis, (label, layer) in zip(axes, membranes.items()):
        layer = np.asarray(layer, dtype=float)
        fired = np.asarray(spikes[label]) if spikes else layer > (thresholds or {}).get(label, np.inf)
        if label == last and class_names and len(class_names) == layer.shape[1]:
            chosen, names = range(layer.shape[1]), list(class_names)
        else:
            chosen = _spread_neurons(fired.sum(0), layer.max(0), neurons_per_layer)
            names = [f"neuron {index}" for index in chosen]
        steps = np.arange(layer.shape[0])
        for index, name in zip(chosen, names):
            line, = axis.plot(steps, layer[:, index], lw=1.2, label=name)
            spiked = fired[:, index] > 0
            axis.plot(steps[spiked], layer[spiked, index], "o", ms=4, color=line.get_color())
        if thresholds and label in thresholds:
            axis.axhline(thresholds[label], color="black", ls="--", lw=1, label="threshold")
        axis.set(xlabel="time step", ylabel="membrane potential U", title=f"layer {label}")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                    title="class" if label == last and class_names else None, title_fontsize=7)
    figure.suptitle(title or "membrane traces (one sample; dots: spikes)")
    figure.tight_layout()
    return _save(figure, path)


def _spread_neurons(spike_counts: np.ndarray, peaks: np.ndarray, count: int) -> list[int]:
    """``count`` neuron indices: evenly spaced over the spiking ones ranked by spike count, then the
    silent ones with the highest peak membrane (the busiest neurons alone are often saturated)."""
    ranked = np.lexsort((-peaks, -spike_counts))  # most spikes first, ties by peak membrane
    spiking = ranked[spike_counts[ranked] > 0]
    if len(spiking) > count:
        spiking = spiking[np.unique(np.linspace(0, len(spiking) - 1, count).round().astype(int))]
    silent = ranked[spike_counts[ranked] == 0]
    return [int(index) for index in np.concatenate([spiking, silent])[:count]]


# --------------------------------------------------------------------------- SNN against SSM


FAMILY_COLOURS = {"SNN": "tab:blue", "SSM": "tab:orange", "CNN": "tab:gray"}


def model_family(row: dict) -> str:
    """"SSM", "SNN" (spikes reach a layer: effective ACs > 0) or "CNN", unless the row names one."""
    if row.get("family"):
        return row["family"]
    if "SSM" in str(row.get("architecture", "")):
        return "SSM"
    return "SNN" if (row.get("effective_acs") or 0) > 0 else "CNN"


def _run_name(row: dict) -> str:
    """"model_b, T=10" for a spiking run, "ssm_raw, 34.8k" for an SSM (one preset spans several
    sizes), "control_cnn" otherwise (from a table row's model or architecture)."""
    name = str(row.get("model") or row.get("architecture", "")).split(" (")[0]
    if model_family(row) == "SSM" and row.get("parameters"):
        return f"{name}, {float(row['parameters']) / 1000:.1f}k"
    return name + (f", T={row['num_steps']}" if model_family(row) == "SNN" and row.get("num_steps") else "")


def _log_axis(axis) -> None:
    """Log scale labelled with plain numbers at 1, 2 and 5 times each power of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.axes.set_xscale("log") if axis is axis.axes.xaxis else axis.axes.set_yscale("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def plot_cost_accuracy(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Test accuracy against cost per sample for SNNs, SSMs and CNNs: operations (left), energy (right).

    rows: lines of ``experiments/compare.py``'s or ``profile_cost.py``'s table (keys architecture,
    num_steps, accuracy, effective_macs, effective_acs, energy_float32_nj; :mod:`scnn.result_tables`). Operations are effective
    MACs + ACs (millions), energy the synaptic energy at 45 nm float32 (nJ); both axes log.
    """
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    costs = [("effective operations per sample (millions, MACs + ACs)",
              lambda r: ((r.get("effective_macs") or 0) + (r.get("effective_acs") or 0)) / 1e6),
             ("synaptic energy per sample (nJ, 45 nm float32)", lambda r: r.get("energy_float32_nj") or 0)]
    for axis, (label, cost) in zip(axes, costs):
        for family, colour in FAMILY_COLOURS.items():
            members = [r for r in rows if model_family(r) == family]
            if members:
                axis.scatter([cost(r) for r in members], [100 * r["accuracy"] for r in members], s=45,
                             color=colour, edgecolor="black", linewidths=0.5, label=family, zorder=3)
        # Neighbours along x get their names above and below in turn, so that they do not overlap.
        for position, row in enumerate(sorted(rows, key=cost)):
            axis.annotate(_run_name(row), (cost(row), 100 * row["accuracy"]), textcoords="offset points",
                          xytext=(4, 5 if position % 2 == 0 else -11), fontsize=7)
        _log_axis(axis.xaxis)
        axis.set(xlabel=label, ylabel="test accuracy (%)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(loc="best")
    figure.suptitle(title or "accuracy against cost per sample: SNN and SSM")
    figure.tight_layout()
    return _save(figure, path)


def plot_ssm_eigenvalues(eigenvalues: list, path: str | Path, labels: list[str] | None = None,
                         title: str = "") -> Path:
    """Eigenvalues of the SSM's discretised state matrices, one colour per layer.

    eigenvalues: one complex array ``[P]`` per layer (:func:`scnn.models.ssm.discrete_eigenvalues`).
    Left: the complex plane with the unit circle (inside it: stable). Right: modulus (decay
    per step) against angle (radians per step), which separates the modes crowded near z = 1.
    """
    labels = labels or [f"layer {index + 1}" for index in range(len(eigenvalues))]
    colours = [plt.get_cmap("tab10")(index % 10) for index in range(len(eigenvalues))]
    figure, (plane, polar) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1, 1.3]})
    angle = np.linspace(0, 2 * np.pi, 400)
    plane.plot(np.cos(angle), np.sin(angle), color="black", lw=1, label="unit circle")
    for values, label, colour in zip(eigenvalues, labels, colours):
        values = np.asarray(values, dtype=complex)
        plane.scatter(values.real, values.imag, s=14, color=colour, alpha=0.8, label=label)
        polar.scatter(np.angle(values), np.abs(values), s=14, color=colour, alpha=0.8, label=label)
    plane.set(xlabel="real part", ylabel="imaginary part", title="discretised eigenvalues (complex plane)",
              xlim=(-1.15, 1.15), ylim=(-1.15, 1.15), aspect="equal")
    limit = polar.axhline(1.0, color="black", lw=1, ls="--", label="|z| = 1 (stability limit)")
    polar.set(xlabel="angle (radians per step)", ylabel="modulus |z| (decay per step)",
              title="modulus against angle", xlim=(-np.pi, np.pi))
    for axis in (plane, polar):
        axis.grid(alpha=0.3)
    figure.suptitle(title or "SSM: eigenvalues of the ZOH-discretised state matrices")
    figure.tight_layout()
    # One legend under both panels: inside either it would hide the modes crowded near |z| = 1.
    handles, names = plane.get_legend_handles_labels()
    figure.legend(handles + [limit], names + [limit.get_label()], loc="upper center", bbox_to_anchor=(0.5, 0.0),
                  ncol=min(len(names) + 1, 4), fontsize=8)
    return _save(figure, path)


# --------------------------------------------------------------------------- quantisation


def _bytes_label(value: float, _=None) -> str:
    """1500 -> "1.5 kB", 2.7e6 -> "2.7 MB" (decimal units)."""
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def _quant_series(rows: list[dict]) -> dict[str, list[dict]]:
    """Series label -> rows sorted by weight bits. Rows of one model that differ in activation or membrane
    bits (or per-channel weights) become separate series, named by those settings."""
    def variant(row):
        return (row.get("act_bits"), row.get("state_bits"), bool(row.get("per_channel")))

    several = len({variant(row) for row in rows}) > 1
    series: dict[str, list[dict]] = {}
    for row in rows:
        label = str(row["model"])
        if several:
            act_bits, state_bits, per_channel = variant(row)
            label += f" (a{act_bits}, s{state_bits}{', per-channel' if per_channel else ''})"
        series.setdefault(label, []).append(row)
    return {label: sorted(members, key=lambda r: -r["weight_bits"]) for label, members in series.items()}


def _percent(value) -> float:
    return np.nan if value is None else 100 * value


def plot_quantization(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Test accuracy (left) and model size (right) against weight bit width, one colour per model.

    rows: dicts with model, weight_bits, float_accuracy, ptq_accuracy, qat_accuracy (fractions; None
    where not measured), float_bytes and quantized_bytes (:func:`scnn.viz.figures.quantization_rows`);
    optional act_bits, state_bits, per_channel. Float32 accuracy and size are dashed lines in the
    model's colour, PTQ open squares, QAT filled circles; the x axis is log2, highest precision left.
    Sizes count the synaptic weights (packed at the weight bit width) and int32 biases.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    series = _quant_series(rows)
    colours = {label: plt.get_cmap("tab10")(index % 10) for index, label in enumerate(series)}
    bits = sorted({row["weight_bits"] for row in rows})
    figure, (accuracy_axis, size_axis) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    labelled = set()
    for index, (label, members) in enumerate(series.items()):
        colour = colours[label]
        # Models side by side around each bit width, so that equal accuracies do not hide each other.
        nudge = 2 ** (0.05 * (index - (len(series) - 1) / 2))
        x = np.array([row["weight_bits"] for row in members], dtype=float) * nudge
        floats = {row["float_accuracy"] for row in members if row.get("float_accuracy") is not None}
        for value in floats:
            accuracy_axis.axhline(100 * value, color=colour, ls="--", lw=1.2)
        # A large open square and a small dot: both stay visible where PTQ and QAT are equal.
        accuracy_axis.plot(x, [_percent(row.get("ptq_accuracy")) for row in members], "s:", color=colour, mfc="white",
                           mew=1.5, ms=9, zorder=3)
        accuracy_axis.plot(x, [_percent(row.get("qat_accuracy")) for row in members], "o-", color=colour, ms=5,
                           zorder=4)
        float_bytes = {row["float_bytes"] for row in members if row.get("float_bytes")}
        for value in float_bytes:
            size_axis.axhline(value, color=colour, ls="--", lw=1.2)
        sizes = [row.get("quantized_bytes") or np.nan for row in members]
        size_axis.plot(x, sizes, "o-", color=colour, ms=6, zorder=3)
        for position, row, size in zip(x, members, sizes):
            # Models of one architecture have equal sizes: one ratio label for them all.
            if row.get("float_bytes") and size == size and (row["weight_bits"], size) not in labelled:
                labelled.add((row["weight_bits"], size))
                size_axis.annotate(f"{row['float_bytes'] / size:.1f}x smaller", (position, size), fontsize=7,
                                   textcoords="offset points", xytext=(0, -13), ha="center", color=colour)
    for axis in (accuracy_axis, size_axis):
        axis.set_xscale("log", base=2)
        axis.set_xticks(bits, [str(b) for b in bits])
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xlim(max(bits) * 1.35, min(bits) / 1.35)  # inverted: precision falls to the right
        axis.set_xlabel("weight bits")
        axis.grid(alpha=0.3)
    accuracy_axis.set(ylabel="test accuracy (%)", title="accuracy")
    low, high = accuracy_axis.get_ylim()
    accuracy_axis.set_ylim(max(low, 0), min(high, 102))  # above 100 %: just room for the markers
    size_axis.set_yscale("log")
    size_axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    size_axis.yaxis.set_minor_locator(NullLocator())
    size_axis.yaxis.set_major_formatter(FuncFormatter(_bytes_label))
    size_axis.set(ylabel="model size (bytes: weights + int32 biases)", title="model size")
    low, high = size_axis.get_ylim()
    size_axis.set_ylim(low / 1.6, high * 1.3)  # room for the ratios under the points
    about = ""
    settings = {(row.get("act_bits"), row.get("state_bits")) for row in rows}
    if len(settings) == 1 and None not in next(iter(settings)):
        act_bits, state_bits = next(iter(settings))
        about = f" (input {act_bits}-bit, membrane {state_bits}-bit)"
    figure.suptitle(title or f"quantisation: accuracy and size against weight bits{about}")
    figure.tight_layout()
    handles = [Line2D([], [], color=colours[label], lw=2.5, label=label) for label in series]
    handles += [Line2D([], [], color="black", ls="--", lw=1.2, label="float32"),
                Line2D([], [], color="black", ls=":", marker="s", mfc="white", mew=1.5, ms=9, label="PTQ"),
                Line2D([], [], color="black", ls="-", marker="o", ms=5, label="QAT")]
    # Under both panels: inside, the legend would cover points at some bit width.
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 6),
                  fontsize=8)
    return _save(figure, path)


def plot_qat_curves(runs: list[dict], path: str | Path, title: str = "") -> Path:
    """Validation accuracy per QAT epoch, one line per run, with the PTQ test accuracy at epoch 0.

    runs: dicts with label, history (``[{"epoch", "val_accuracy", ...}]`` of results.json) and
    ptq_accuracy (fraction). Epoch 0 is the calibrated model before any QAT update.
    """
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for index, run in enumerate(runs):
        colour = plt.get_cmap("tab10")(index % 10)
        epochs = [row["epoch"] for row in run["history"]]
        axis.plot(epochs, [100 * row["val_accuracy"] for row in run["history"]], "o-", ms=4, color=colour,
                  label=run["label"])
        if run.get("ptq_accuracy") is not None:
            axis.plot([0], [100 * run["ptq_accuracy"]], "s", ms=7, mfc="white", mew=1.5, color=colour)
            if epochs:
                axis.plot([0, epochs[0]], [100 * run["ptq_accuracy"], 100 * run["history"][0]["val_accuracy"]],
                          ":", color=colour)
    axis.plot([], [], "s", mfc="white", mew=1.5, color="black", label="PTQ, test (epoch 0)")
    axis.set(xlabel="QAT epoch", ylabel="accuracy (%)", title=title or "QAT: validation accuracy per epoch")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)


def plot_class_evidence(times, evidence, class_names: list[str], path: str | Path, detections: list[dict] = (),
                        title: str = "") -> Path:
    """Class evidence against time: one line per class (``evidence [frames, classes]`` at ``times``
    seconds), each detection (``start_s``, ``end_s``, ``name``) shaded and labelled."""
    evidence = np.asarray(evidence)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.5 * float(times[-1]) if len(times) else 6.0), 3.6))
    colours = plt.get_cmap("tab10")
    for index, name in enumerate(class_names):
        axis.plot(times, evidence[:, index], lw=1.0, color=colours(index % 10), label=name)
    for found in detections:
        axis.axvspan(found["start_s"], found["end_s"], color="0.85", zorder=0)
        axis.text((found["start_s"] + found["end_s"]) / 2, 1.0, found["name"], transform=axis.get_xaxis_transform(),
                  ha="center", va="bottom", fontsize=10)
    axis.set_xlabel("time (s)")
    axis.set_ylabel("readout membrane")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="class")
    axis.set_title(title, pad=16)
    return _save(figure, path)


def plot_noise_accuracy(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy (%) against SNR (dB), one line per noise kind; rows of the ``noise`` table (noise
    "none", the clean accuracy, as a dashed line)."""
    figure, axis = plt.subplots(figsize=(5.2, 3.8))
    for kind in dict.fromkeys(row["noise"] for row in rows if row["noise"] != "none"):
        points = sorted((row["snr_db"], row["accuracy"]) for row in rows if row["noise"] == kind)
        axis.plot([p[0] for p in points], [100 * p[1] for p in points], "o-", ms=4, label=kind)
    for row in rows:
        if row["noise"] == "none":
            axis.axhline(100 * row["accuracy"], color="grey", ls="--", lw=1, label="clean")
    axis.set_xlabel("SNR (dB)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend()
    if title:
        axis.set_title(title)
    return _save(figure, path)


def plot_cv_accuracy(summary: dict, path: str | Path, title: str = "") -> Path:
    """Cross-validation (:func:`scnn.train.cv.summarize`): test accuracy per speaker (bars) with the
    mean over folds (line) and its ± sample std (band), and per class; the refits' bars beside, if any."""
    speakers = list(summary["per_speaker"])
    classes = list(summary["per_class"])
    figure, (speaker_axis, class_axis) = plt.subplots(1, 2, figsize=(11, 3.8),
                                                      gridspec_kw={"width_ratios": [max(len(speakers), 2),
                                                                                    max(len(classes), 2)]})
    mean, std = 100 * summary["mean_test_accuracy"], 100 * summary["std_test_accuracy"]
    refit = summary.get("refit")
    width = 0.4 if refit else 0.8
    for axis, names, key, label in (
            (speaker_axis, speakers, "per_speaker", "speaker (never heard in training)"),
            (class_axis, classes, "per_class", "class")):
        heights = [100 * summary[key][name]["accuracy"] for name in names]
        offset = -width / 2 if refit else 0.0
        axis.bar([i + offset for i in range(len(names))], heights, width, color="tab:blue", label="validated run")
        if refit:
            axis.bar([i + width / 2 for i in range(len(names))], [100 * refit[key][name]["accuracy"] for name in names],
                     width, color="tab:orange", label=f"refit (mean {100 * refit['mean_test_accuracy']:.1f} %)")
        axis.axhline(mean, color="black", lw=1, label=f"mean over folds {mean:.1f} %")
        axis.axhspan(mean - std, mean + std, color="gray", alpha=0.2, label=f"± std {std:.1f}")
        axis.set(xticks=range(len(names)), ylim=(0, 100), xlabel=label, ylabel="test accuracy (%)")
        axis.set_xticklabels(names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
        axis.grid(axis="y", alpha=0.3)
    speaker_axis.legend(loc="lower right", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)
