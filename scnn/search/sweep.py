"""One-parameter sweeps: vary beta, threshold, num_steps (or any config field), several seeds per point.

Each finished (value, seed) point is appended to ``sweep.csv`` at once (the file is
rewritten atomically), and a rerun skips the points already there, so an interrupted
sweep resumes where it stopped. Features are prepared once and shared by every run.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import fields, replace
from pathlib import Path

from scnn.io import write_text
from scnn.data.prepare import DataConfig, PreparedData, prepare_data
from scnn.train.config import TrainConfig
from scnn.train.loop import train

SWEEP_COLUMNS = ["param", "value", "seed", "val_accuracy", "test_accuracy", "activation_sparsity",
                 "effective_acs_per_sample", "effective_macs_per_sample", "dense_macs_per_sample", "epochs_run",
                 "wall_time_s"]


def _config_for(base: TrainConfig, param: str, value) -> TrainConfig:
    """A training config with ``param`` set: a TrainConfig field, else a model option."""
    if param in {f.name for f in fields(TrainConfig)}:
        return replace(base, **{param: value})
    return replace(base, model_overrides={**base.model_overrides, param: value})


def read_sweep(path: str | Path) -> list[dict]:
    """Rows of a sweep CSV with numbers parsed (empty list if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for row in csv.DictReader(path.open()):
        rows.append({key: (value if key == "param" else _number(value)) for key, value in row.items()})
    return rows


def _number(text: str):
    if text in ("", "None"):
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _write_sweep(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SWEEP_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def run_sweep(param: str, values: list, seeds: list[int], base: TrainConfig, data_config: DataConfig,
              out_dir: str | Path, data: PreparedData | None = None, progress: bool = True) -> list[dict]:
    """Train one run per (value, seed) not yet in ``out_dir/sweep.csv``; returns all rows.

    Every run is selected on validation accuracy and evaluated once on test, as in ``train``.
    """
    out_dir = Path(out_dir)
    csv_path = out_dir / "sweep.csv"
    rows = read_sweep(csv_path)
    done = {(row["param"], row["value"], row["seed"]) for row in rows}
    data = data if data is not None else prepare_data(data_config, progress=progress)
    for value in values:
        for seed in seeds:
            if (param, value, seed) in done:
                continue
            config = _config_for(replace(base, seed=seed), param, value)
            start = time.perf_counter()
            results = train(config, data_config, out_dir / f"{param}={value}" / f"seed{seed}", progress=False,
                            data=data)
            rows.append({"param": param, "value": value, "seed": seed, "val_accuracy": results["val_accuracy"],
                         "test_accuracy": results["test_accuracy"],
                         "activation_sparsity": results["activation_sparsity"],
                         "effective_acs_per_sample": results["effective_acs_per_sample"],
                         "effective_macs_per_sample": results["effective_macs_per_sample"],
                         "dense_macs_per_sample": results["dense_macs_per_sample"],
                         "epochs_run": results["epochs_run"], "wall_time_s": time.perf_counter() - start})
            _write_sweep(csv_path, rows)
            if progress:
                print(f"{param}={value} seed {seed}: val {results['val_accuracy']:.4f} test "
                      f"{results['test_accuracy']:.4f} sparsity {results['activation_sparsity']:.3f}", flush=True)
    return rows


def summarize_sweep(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per value: one row per value, sorted."""
    import statistics

    summary = []
    for value in sorted({row["value"] for row in rows}):
        group = [row for row in rows if row["value"] == value]
        entry = {"value": value, "seeds": len(group)}
        for key in ("val_accuracy", "test_accuracy", "activation_sparsity", "effective_acs_per_sample"):
            numbers = [row[key] for row in group if row[key] is not None]
            entry[f"{key}_mean"] = statistics.mean(numbers) if numbers else None
            entry[f"{key}_std"] = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
        summary.append(entry)
    return summary
