"""Every figure from saved results, without a notebook.

Each function reads what a script left on disk (a run folder, a sweep CSV, a search's
trials, a cost table, quantisation results) and writes PNGs into ``out``, returning their paths.
``experiments/plot.py`` is their command line; the notebooks call the same plotting
functions of :mod:`scnn.viz.plots` one at a time.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from scnn.data.prepare import checkpoint_data
from scnn.viz.dynamics import record_sample
from scnn.io import load_checkpoint
from scnn.viz.plots import (plot_confusion_matrix, plot_cost_accuracy, plot_firing_rates, plot_membrane_traces,
                           plot_pareto, plot_qat_curves, plot_quantization, plot_spike_raster, plot_ssm_eigenvalues,
                           plot_sweep, plot_sweeps_sparsity_accuracy, plot_training_curves)
from scnn.result_tables import load_table, read_table
from scnn.viz.tables import quantization_row, read_cost_table
from scnn.models.ssm import SSMClassifier, discrete_eigenvalues
from scnn.search.sweep import read_sweep, summarize_sweep
from scnn.train.evaluate import load_trained_model
from scnn.search.tune import load_trials, pareto_front, sparsity_front


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
    data = checkpoint_data(saved, {"data_dir": data_dir})
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


def sweeps_comparison_figures(csv_paths: list[str | Path], out: str | Path) -> list[Path]:
    """Sweeps of the same parameter over several models (e.g. threshold for Models A and B): one figure of
    test accuracy against sparsity per parameter, every model in it. Models are named by their sweep folder."""
    by_param: dict[str, dict[str, list[dict]]] = {}
    for csv_path in csv_paths:
        rows = read_sweep(csv_path)
        if rows:
            by_param.setdefault(rows[0]["param"], {})[Path(csv_path).parent.name] = summarize_sweep(rows)
    return [plot_sweeps_sparsity_accuracy(series, param, Path(out) / f"sweeps_{param}_accuracy_vs_sparsity.png")
            for param, series in by_param.items() if len(series) > 1]


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
    """SNN against SSM: test accuracy against cost per sample, from compare.csv / profile.csv (or their
    sidecars .json), read through :mod:`scnn.result_tables`."""
    rows = [row for table in tables for row in read_cost_table(table)]
    if not rows:
        raise ValueError(f"no rows in {', '.join(map(str, tables))}")
    return [plot_cost_accuracy(rows, Path(out) / "cost_accuracy.png")]


# --------------------------------------------------------------------------- quantisation

# benchmarks/quantization.py's table: one row per run folder beside it (its "run" column).
QUANT_TABLE = "summary.csv"


def _run_folder(table_path: Path, run: str) -> Path:
    """A table's "run" cell as a folder: relative to the table's folder unless absolute."""
    return Path(run) if Path(run).is_absolute() else table_path.parent / run


def quantization_results(paths) -> list[tuple[Path, dict]]:
    """(folder, results.json) of every ``experiments/quantize.py`` run under ``paths``.

    paths: one path or a list; each a result folder, a folder of result folders (e.g.
    ``benchmarks/quantization.py``'s OUT) or its "quantization" table (summary.csv or its
    sidecar summary.json), for which the run folders its rows name are read (those that still
    exist). Each folder is listed once.
    """
    found, seen = [], set()
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        path = Path(path)
        if path.is_file():
            table = load_table(path, "quantization")
            folders = [_run_folder(table.path, row["run"]) for row in table.rows]
        elif (path / "results.json").is_file():
            folders = [path]
        else:
            folders = sorted(folder for folder in path.glob("*") if (folder / "results.json").is_file())
        for folder in folders:
            # A folder given twice (itself and through its table) counts once.
            if (folder / "results.json").is_file() and folder.resolve() not in seen:
                seen.add(folder.resolve())
                found.append((folder, json.loads((folder / "results.json").read_text())))
    return found


def _benchmark_name(folder: Path) -> str | None:
    """The model name benchmarks/quantization.py's table beside ``folder`` gives it (None if none does)."""
    table = folder.parent / QUANT_TABLE
    if not table.is_file():
        return None
    names = {_run_folder(table, row["run"]).resolve(): row["model"] for row in read_table(table, "quantization")}
    return names.get(folder.resolve())


def _quant_model_name(folder: Path, results: dict) -> str:
    """The name benchmarks/quantization.py's table beside the folder gives it; else the float checkpoint's
    model and T ("model_b, T=10"); else the folder name. QAT from scratch is marked, having no float model."""
    config = results["config"]
    name = _benchmark_name(folder)
    if name is None:
        name = config["model"] if config["mode"] == "scratch" else (
            _checkpoint_model_name(config["checkpoint"]) or folder.name)
    return name + (" (QAT from scratch)" if config["mode"] == "scratch" else "")


@functools.lru_cache(maxsize=None)
def _checkpoint_model_name(path: str) -> str | None:
    """"model_b, T=10" from a float checkpoint (a relative path is tried from here, then from the
    repository root, where the scripts usually run); None if it cannot be read."""
    for candidate in (Path(path), Path(__file__).resolve().parents[1] / path):
        try:
            checkpoint = load_checkpoint(candidate)
            model = checkpoint["model"]["config"]
            return checkpoint["train_config"]["model"] + (f", T={model['num_steps']}" if model.get("spiking") else "")
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            continue
    return None


def _quant_row(folder: Path, results: dict) -> dict:
    """One results.json as a row of :func:`quantization_rows`."""
    return {**quantization_row(results, _quant_model_name(folder, results), str(folder)), "folder": str(folder)}


def quantization_rows(paths) -> list[dict]:
    """Float, PTQ and QAT test accuracy and model size per model and bit width, for :func:`plot_quantization`.

    paths: one path or a list of quantize.py result folders, folders of them, or
    benchmarks/quantization.py's table (summary.csv, read through :mod:`scnn.result_tables`).
    Rows: the columns of the "quantization" table (model, run, checkpoint, mode, weight_bits,
    act_bits, state_bits, per_channel, float_accuracy, ptq_accuracy, qat_accuracy: fractions,
    None if not measured; float_bytes, quantized_bytes, the integer reference's and the ONNX
    exports' agreement, wall_time_s) and folder (the result folder). Runs of one model at the same
    bits merge into one row: a QAT run's values first, the gaps filled from the others (e.g. a
    PTQ-only run); otherwise the first found comes first.
    """
    rows: dict[tuple, dict] = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        path = Path(path)
        if path.is_dir() and not (path / "results.json").is_file() and not any(path.glob("*/results.json")) \
                and (path / QUANT_TABLE).is_file():
            path = path / QUANT_TABLE
        found = [_quant_row(folder, results) for folder, results in quantization_results(path)]
        if path.is_file():  # the table's rows first; run folders it names add nothing new but their history
            table = load_table(path, "quantization")
            found = [{**row, "folder": str(_run_folder(table.path, row["run"]))} for row in table.rows] + found
        elif not found:
            raise FileNotFoundError(f"no results.json in or under {path}: run experiments/quantize.py "
                                    f"--out FOLDER or benchmarks/quantization.py --out FOLDER first")
        for row in found:
            key = (row["model"], row["weight_bits"], row["act_bits"], row["state_bits"], row["per_channel"])
            earlier = rows.get(key)
            if earlier is None:
                rows[key] = row
                continue
            # A QAT run's values (its integer export's agreement included) before a PTQ-only run's.
            later_trained = earlier["qat_accuracy"] is None and row["qat_accuracy"] is not None
            first, second = (row, earlier) if later_trained else (earlier, row)
            rows[key] = {name: second.get(name) if first.get(name) is None else first[name] for name in first}
    return list(rows.values())


def quant_figures(paths: list[str | Path], out: str | Path) -> list[Path]:
    """Quantisation (all inputs in one figure): accuracy and model size against weight bits
    (quantization.png), and validation accuracy per QAT epoch from the result folders that
    have one (qat_curves.png)."""
    rows = quantization_rows(paths)
    if not rows:
        raise ValueError(f"no quantisation results in {', '.join(map(str, paths))}")
    out = Path(out)
    figures = [plot_quantization(rows, out / "quantization.png")]
    curves = [{"label": "{model}, w{weight_bits}a{act_bits}s{state_bits}".format(**_quant_row(folder, results)),
               "history": results["history"], "ptq_accuracy": results.get("ptq_test_accuracy")}
              for folder, results in quantization_results(paths) if results.get("history")]
    if curves:
        figures.append(plot_qat_curves(curves, out / "qat_curves.png"))
    return figures
