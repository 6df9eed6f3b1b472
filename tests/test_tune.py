"""Ray Tune searches end to end on a small FSDD subset: every algorithm, multi-objective, restore."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
import tune_neuron  # noqa: E402

from scnn.tune import pareto_front  # noqa: E402


def tiny_search(fsdd_dir, feature_cache, out, *extra):
    return tune_neuron.main(["--num-samples", "2", "--epochs", "1", "--train-per-class", "10",
                             "--data-dir", str(fsdd_dir), "--cache-dir", str(feature_cache), "--out", str(out),
                             *extra])


@pytest.mark.parametrize("algorithm", ["random", "optuna", "hyperopt", "bayesopt"])
def test_tiny_search_with_each_algorithm(fsdd_dir, feature_cache, tmp_path, algorithm):
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", algorithm)
    assert summary["trials"] == 2 and summary["finished_trials"] == 2
    trials = json.loads((tmp_path / "trials.json").read_text())
    for trial in trials:
        assert 0.0 <= trial["beta"] <= 1.0 and 0.0 < trial["threshold"] <= 5.0 and 1 <= trial["num_steps"] < 26
        assert trial["synops"] > 0 and 0 <= trial["activation_sparsity"] <= 1
    assert 0 <= summary["retrained_test_accuracy"] <= 1 and (tmp_path / "pareto.png").exists()
    assert summary["retrained_config"]["model_overrides"]["num_steps"] == int(summary["chosen_config"]["num_steps"])


def test_multi_objective_search_writes_the_pareto_front(fsdd_dir, feature_cache, tmp_path):
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "optuna", "--multi-objective")
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert summary["multi_objective"] and 1 <= len(front) <= 2
    assert (tmp_path / "pareto.md").read_text().startswith("| beta")


def test_restore_keeps_finished_trials(fsdd_dir, feature_cache, tmp_path):
    tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "random")
    first = json.loads((tmp_path / "trials.json").read_text())
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "random", "--resume")
    again = json.loads((tmp_path / "trials.json").read_text())
    assert summary["trials"] == 2
    assert [(t["beta"], t["val_accuracy"]) for t in again] == [(t["beta"], t["val_accuracy"]) for t in first]


def test_pareto_front():
    points = [{"val_accuracy": 0.9, "synops": 10}, {"val_accuracy": 0.95, "synops": 20},
              {"val_accuracy": 0.85, "synops": 15}, {"val_accuracy": 0.99, "synops": 50}]
    assert pareto_front(points) == [points[0], points[1], points[3]]


def test_bayesopt_rejects_discrete_dimensions():
    from scnn.tune import neuron_search_space

    with pytest.raises(ValueError, match="continuous"):
        neuron_search_space("bayesopt", tune_batch_size=True)


def test_ssm_baseline_is_searchable_with_its_own_space(fsdd_dir, feature_cache, tmp_path):
    summary = tiny_search(fsdd_dir, feature_cache, tmp_path, "--search", "random", "--space", "ssm",
                          "--model", "ssm_tiny")
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert summary["finished_trials"] == 2
    assert all({"features", "state_size", "layers", "dt_max", "lr"} <= set(trial) for trial in trials)
    overrides = summary["retrained_config"]["model_overrides"]
    assert overrides["features"] % 2 == 0 and len(overrides["downsample"]) == int(summary["chosen_config"]["layers"])


def test_search_killed_midway_resumes_without_losing_finished_trials(fsdd_dir, feature_cache, tmp_path):
    """Kill the driver (SIGKILL) once a trial has finished; --resume completes the search and keeps it."""
    import os
    import signal
    import subprocess
    import time

    script = Path(__file__).resolve().parents[1] / "sweeps" / "tune_neuron.py"
    arguments = ["--search", "random", "--num-samples", "6", "--epochs", "2", "--grace-period", "2",
                 "--train-per-class", "10", "--data-dir", str(fsdd_dir), "--cache-dir", str(feature_cache),
                 "--out", str(tmp_path)]
    driver = subprocess.Popen([sys.executable, str(script), *arguments], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    search = tmp_path / "ray" / "search"
    deadline = time.time() + 240

    def finished_trials():
        return [p.parent.name for p in search.glob("*/result.json") if len(p.read_text().splitlines()) >= 2]

    while time.time() < deadline and not finished_trials() and driver.poll() is None:
        time.sleep(1)
    time.sleep(3)  # let Tune write its experiment state
    finished_before = finished_trials()
    assert driver.poll() is None and finished_before, "the search should be killed midway, after a trial finished"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    subprocess.run(["pkill", "-9", "-f", "ray::"], check=False)
    assert not (tmp_path / "summary.json").exists()

    summary = tune_neuron.main([*arguments, "--resume"])
    assert summary["trials"] == 6 and summary["finished_trials"] == 6
    still_there = {p.parent.name for p in search.glob("*/result.json")}
    assert set(finished_before) <= still_there
