"""Every figure from saved results, without a notebook.

Each function reads what a script left on disk (a run folder, a sweep CSV, a search's
trials, a cost table) and writes PNGs into ``out``, returning their paths.
``experiments/plot.py`` is their command line; the notebooks call the same plotting
functions of :mod:`scnn.plotting` one at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

from scnn.dynamics import checkpoint_data, record_sample
from scnn.plotting import (plot_confusion_matrix, plot_cost_accuracy, plot_firing_rates, plot_membrane_traces,
                           plot_pareto, plot_spike_raster, plot_ssm_eigenvalues, plot_sweep, plot_training_curves)
from scnn.report import read_rows
from scnn.ssm import SSMClassifier, discrete_eigenvalues
from scnn.sweeps import read_sweep, summarize_sweep
from scnn.training import load_trained_model
from scnn.tune import load_trials, pareto_front, sparsity_front


def run_figures(run_dir: str | Path, out: str | Path, data_dir: str | None = None, sample: int = 0) -> list[Path]:
    """A training run folder: curves (metrics.jsonl), confusion matrix (results.json), and from best.pt
    the spiking figures of test recording ``sample`` or the SSM's eigenvalues (files ``NAME_*.png``)."""
    run_dir, out = Path(run_dir), Path(out)
    name, paths = run_dir.name, []
    if (run_dir / "metrics.jsonl").is_file():
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        paths.append(plot_training_curves(history, out / f"{name}_training_curves.png", title=f"{name}: training"))
    if (run_dir / "results.json").is_file():
        results = json.loads((run_dir / "results.json").read_text())
        paths.append(plot_confusion_matrix(results["confusion_matrix"], list(results["per_class_accuracy"]),
                                           out / f"{name}_confusion_matrix.png",
                                           title=f"{name}: test accuracy {results['test_accuracy']:.2%}"))
    if (run_dir / "best.pt").is_file():
        paths += checkpoint_figures(run_dir / "best.pt", out, name, data_dir, sample)
    if not paths:
        raise FileNotFoundError(f"{run_dir} holds none of metrics.jsonl, results.json, best.pt: not a training run")
    return paths


def checkpoint_figures(checkpoint: str | Path, out: str | Path, name: str, data_dir: str | None = None,
                       sample: int = 0) -> list[Path]:
    """Spike raster, firing rates and membrane traces of one test recording (spiking models; needs
    the recordings), or the eigenvalues of an SSM's discretised state matrices (needs none)."""
    out = Path(out)
    model, saved = load_trained_model(checkpoint)
    if isinstance(model, SSMClassifier):
        labels = [f"layer {index + 1}" + (f" (downsampled x{block.downsample})" if block.downsample > 1 else "")
                  for index, block in enumerate(model.blocks)]
        return [plot_ssm_eigenvalues(discrete_eigenvalues(model), out / f"{name}_ssm_eigenvalues.png", labels,
                                     title=f"{name}: eigenvalues of the ZOH-discretised state matrices")]
    if not getattr(model.config, "spiking", False):
        return []
    data = checkpoint_data(saved, data_dir)
    test_x, test_y = data.test
    if not 0 <= sample < len(test_y):
        raise ValueError(f"--sample {sample}: the test split of {checkpoint} has {len(test_y)} recordings")
    dynamics = record_sample(model, test_x[sample])
    truth, predicted = data.class_names[int(test_y[sample])], data.class_names[int(dynamics.logits.argmax())]
    about = f"{name}: test recording {sample} (class {truth}, predicted {predicted})"
    return [
        plot_spike_raster(dynamics.spikes, out / f"{name}_spike_raster.png", title=f"{about}, spikes"),
        plot_firing_rates(dynamics.firing_rates, out / f"{name}_firing_rates.png", num_steps=model.num_steps,
                          title=f"{about}, firing rates"),
        plot_membrane_traces(dynamics.membranes, out / f"{name}_membrane_traces.png", dynamics.thresholds,
                             dynamics.spikes, class_names=data.class_names, title=f"{about}, membranes"),
    ]


def sweep_figures(csv_path: str | Path, out: str | Path) -> list[Path]:
    """A one-parameter sweep (``experiments/sweep_param.py``'s sweep.csv): accuracy and sparsity against
    the parameter (error bars over seeds), and test accuracy against sparsity per run with its front."""
    rows = read_sweep(csv_path)
    if not rows:
        raise FileNotFoundError(f"no sweep rows in {csv_path}: run experiments/sweep_param.py --out FOLDER first")
    out, name, param = Path(out), Path(csv_path).parent.name, rows[0]["param"]
    points = [{**row, param: row["value"]} for row in rows]
    front = sparsity_front(points, maximize="test_accuracy")
    return [
        plot_sweep(summarize_sweep(rows), param, out / f"{name}_sweep.png", title=f"{name}: {param} sweep"),
        plot_pareto(points, front, out / f"{name}_accuracy_vs_sparsity.png", x="activation_sparsity",
                    y="test_accuracy", points_label="runs (one per value and seed)", annotate=param,
                    title=f"{name}: test accuracy against sparsity"),
    ]


def tune_figures(path: str | Path, out: str | Path) -> list[Path]:
    """A Ray Tune search (``sweeps/tune_neuron.py``'s folder, trials.json or a CSV of trials): validation
    accuracy against SynOps and against activation sparsity, Pareto fronts joined."""
    trials = load_trials(path)
    if not trials:
        raise ValueError(f"no finished trial in {path}")
    path, out = Path(path), Path(out)
    name = path.name if path.is_dir() else path.parent.name
    return [
        plot_pareto(trials, pareto_front(trials), out / f"{name}_accuracy_vs_synops.png",
                    title=f"{name}: {len(trials)} trials, accuracy against SynOps"),
        plot_pareto(trials, sparsity_front(trials), out / f"{name}_accuracy_vs_sparsity.png",
                    x="activation_sparsity", title=f"{name}: {len(trials)} trials, accuracy against sparsity"),
    ]


def cost_figures(tables: list[str | Path], out: str | Path) -> list[Path]:
    """SNN against SSM: test accuracy against cost per sample, from compare.csv / profile.csv (or .json)."""
    rows = [row for table in tables for row in read_rows(table) if row.get("accuracy") is not None]
    if not rows:
        raise ValueError(f"no row with an accuracy in {', '.join(map(str, tables))}")
    return [plot_cost_accuracy(rows, Path(out) / "cost_accuracy.png")]
