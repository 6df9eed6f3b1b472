"""One-parameter sweeps: every point recorded, a rerun resumes from the CSV, figure written."""

import subprocess
import sys
from pathlib import Path

from scnn.search import sweep as sweeps
from scnn.viz.plots import plot_sweep
from scnn.search.sweep import read_sweep, run_sweep, summarize_sweep
from scnn.train import DataConfig, TrainConfig
from tests.test_training import synthetic_data


def test_sweep_records_points_and_resumes(tmp_path, monkeypatch):
    base = TrainConfig(model="model_b", epochs=1, batch_size=8, model_overrides={"num_steps": 2})
    rows = run_sweep("beta", [0.3, 0.9], [0], base, DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    assert [(row["value"], row["seed"]) for row in rows] == [(0.3, 0), (0.9, 0)]
    assert read_sweep(tmp_path / "sweep.csv") == rows
    assert all(0 <= row["activation_sparsity"] <= 1 and row["effective_acs_per_sample"] >= 0 for row in rows)

    calls = []
    original = sweeps.train
    monkeypatch.setattr(sweeps, "train", lambda *args, **kwargs: calls.append(args[0]) or original(*args, **kwargs))
    rows = run_sweep("beta", [0.3, 0.9], [0, 1], base, DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    assert len(calls) == 2 and all(config.seed == 1 for config in calls), "finished points are skipped"
    assert len(rows) == 4 and calls[0].model_overrides == {"num_steps": 2, "beta": 0.3}

    summary = summarize_sweep(rows)
    assert [row["value"] for row in summary] == [0.3, 0.9] and all(row["seeds"] == 2 for row in summary)
    assert plot_sweep(summary, "beta", tmp_path / "sweep.png").stat().st_size > 0


def test_training_fields_can_be_swept(tmp_path):
    base = TrainConfig(model="model_b", epochs=1, batch_size=8, model_overrides={"num_steps": 2})
    rows = run_sweep("lr", [1e-3], [0], base, DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    assert rows[0]["value"] == 1e-3


def test_sweep_script_on_real_fsdd(tmp_path, fsdd_dir, feature_cache):
    script = Path(__file__).resolve().parents[1] / "experiments" / "sweep_param.py"
    command = [sys.executable, str(script), "--model", "model_b", "--param", "num_steps", "--values", "1", "2",
               "--seeds", "0", "--epochs", "1", "--train-per-class", "20", "--data-dir", str(fsdd_dir),
               "--cache-dir", str(feature_cache), "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    rows = read_sweep(tmp_path / "sweep.csv")
    assert [row["value"] for row in rows] == [1, 2]
    assert (tmp_path / "sweep.png").exists() and (tmp_path / "sweep_summary.json").exists()
