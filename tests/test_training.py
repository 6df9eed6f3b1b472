"""Training: determinism, resume equals an uninterrupted run, artefacts, scripts end to end."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from scnn.features import Normalizer, feature_config
from scnn.io import load_checkpoint
from scnn.result_tables import read_table
from scnn.train import DataConfig, PreparedData, TrainConfig, load_trained_model, train

REPO_EXPERIMENTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments"


def synthetic_data(seed=0, per_class=12, classes=4) -> PreparedData:
    """Learnable random data: each class is a noisy copy of its own 32x32 pattern."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randn(classes, 1, 32, 32, generator=generator) * 2

    def part(count):
        y = torch.arange(classes).repeat_interleave(count)
        return patterns[y] + 0.5 * torch.randn(len(y), 1, 32, 32, generator=generator), y

    identity = Normalizer(np.zeros(32, np.float32), np.ones(32, np.float32), enabled=False)
    return PreparedData(part(per_class), part(3), part(3), class_names=[str(c) for c in range(classes)],
                        normalizer=identity, feature_config=feature_config(), data_dir="synthetic")


def quick_config(**overrides) -> TrainConfig:
    values = dict(model="model_b", model_overrides={"num_steps": 3}, epochs=3, batch_size=8, seed=7, lr=2e-3)
    values.update(overrides)
    return TrainConfig(**values)


def final_weights(out_dir):
    return load_checkpoint(out_dir / "last.pt")["model_state"]


def test_same_seed_same_results(tmp_path):
    first = train(quick_config(epochs=2), DataConfig(), tmp_path / "a", progress=False, data=synthetic_data())
    second = train(quick_config(epochs=2), DataConfig(), tmp_path / "b", progress=False, data=synthetic_data())
    for key, value in final_weights(tmp_path / "a").items():
        assert torch.equal(value, final_weights(tmp_path / "b")[key]), key
    assert first["test_accuracy"] == second["test_accuracy"]


@pytest.mark.parametrize("model, overrides", [("model_b", {"num_steps": 3, "dropout": 0.3}), ("control_cnn", {})])
def test_resume_reproduces_uninterrupted_run(tmp_path, model, overrides):
    config = quick_config(model=model, model_overrides=overrides, schedule="onecycle")
    full = train(config, DataConfig(), tmp_path / "full", progress=False, data=synthetic_data())
    partial = train(config, DataConfig(), tmp_path / "cut", progress=False, data=synthetic_data(), stop_after_epochs=1)
    assert partial == {"interrupted_after_epoch": 1}
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train(config, DataConfig(), tmp_path / "cut", resume=True, progress=False, data=synthetic_data())
    for key, value in final_weights(tmp_path / "full").items():
        assert torch.equal(value, final_weights(tmp_path / "cut")[key]), key
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["epochs_run"] == full["epochs_run"] == 3
    rows = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_early_stopping_and_best_checkpoint(tmp_path):
    results = train(quick_config(epochs=6, patience=1, lr=0.0), DataConfig(), tmp_path, progress=False,
                    data=synthetic_data())
    assert results["epochs_run"] == 2 and results["best_epoch"] == 1  # lr 0: never improves after epoch 1
    model, checkpoint = load_trained_model(tmp_path / "best.pt")
    assert checkpoint["epoch"] == 0 and model.config.num_steps == 3


def test_checkpoint_load_is_safe_and_clear(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"model_state": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="lacks"):
        load_trained_model(tmp_path / "foreign.pt")


def test_missing_data_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run([sys.executable, str(REPO_EXPERIMENTS / "train.py"), "--data-dir", str(missing),
                             "--out", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True)
    assert result.returncode != 0
    assert str(missing) in result.stderr and "SCNN_DATA_DIR" in result.stderr


def test_train_and_evaluate_scripts_end_to_end_on_fsdd(tmp_path, fsdd_dir, feature_cache):
    """A short run on real FSDD (subset of train), then evaluate.py rebuilds the model from the checkpoint alone."""
    out = tmp_path / "run"
    command = [sys.executable, str(REPO_EXPERIMENTS / "train.py"), "--model", "model_b", "--data-dir", str(fsdd_dir),
               "--split", "official", "--epochs", "3", "--num-steps", "4", "--train-per-class", "60",
               "--batch-size", "32", "--seed", "0", "--out", str(out), "--cache-dir", str(feature_cache),
               "--no-progress", "--threads", "2"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    results = json.loads((out / "results.json").read_text())
    assert results["test_accuracy"] > 0.5, results["test_accuracy"]  # chance is 0.1
    assert results["split_sizes"]["test"] == 300 and results["split_sizes"]["train"] == 600
    assert results["num_params"] == 692_678 and results["epochs_run"] == 3
    assert set(results["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert len(results["spike_rate_per_layer"]) == 3
    for name in ("last.pt", "best.pt", "metrics.csv", "metrics.jsonl", "training_curves.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0, name
    evaluation = tmp_path / "evaluation"
    subprocess.run([sys.executable, str(REPO_EXPERIMENTS / "evaluate.py"), "--checkpoint", str(out / "best.pt"),
                    "--data-dir", str(fsdd_dir), "--out", str(evaluation), "--no-progress"],
                   check=True, capture_output=True, text=True, env={**__import__("os").environ,
                                                                     "XDG_CACHE_HOME": str(feature_cache)})
    evaluated = json.loads((evaluation / "results.json").read_text())
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert evaluated["schema_version"] == results["schema_version"] == 1
    assert evaluated["test_set"]["differences"] == [] and evaluated["test_set"]["digest"] == results["test_set_digest"]
    with open(evaluation / "predictions.csv", newline="") as handle:
        predictions = list(csv.DictReader(handle))
    assert len(predictions) == 300
    assert sum(row["label"] == row["prediction"] for row in predictions) == round(300 * evaluated["test_accuracy"])
    assert (evaluation / "confusion_matrix.png").exists()
    for written, kind in ((results, "train"), (evaluated, "evaluate")):
        assert set(written) == documented_keys(kind), f"docs/results_schema.md and {kind}'s results.json differ"


def documented_keys(kind: str) -> set[str]:
    """The keys docs/results_schema.md lists for one kind of results.json (its shared table and the kind's own)."""
    text = (REPO_EXPERIMENTS.parent / "docs" / "results_schema.md").read_text()
    keys = set()
    for heading in ("## Keys shared by all kinds", f"## `kind: {kind}`"):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        table = next(block for block in section.split("\n\n") if block.startswith("| key |"))
        keys |= {line.split("`")[1] for line in table.splitlines()[2:]}
    return keys
    assert 0 < results["activation_sparsity"] < 1 and results["dense_macs_per_sample"] == 48_600 + 4 * 692_480
    profile = tmp_path / "profile"
    subprocess.run([sys.executable, str(REPO_EXPERIMENTS / "profile_cost.py"), str(out / "best.pt"), "--data-dir",
                    str(fsdd_dir), "--max-samples", "50", "--out", str(profile)], check=True, capture_output=True,
                   text=True, env={**__import__("os").environ, "XDG_CACHE_HOME": str(feature_cache)})
    row = read_table(profile / "profile.csv", "profile")[0]  # through the schema (scnn.result_tables)
    assert row["accuracy"] == results["test_accuracy"] and row["parameters"] == 692_678
    assert row["effective_acs"] > 0 and (profile / "profile.csv").exists()


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_help_documents_every_option(script):
    result = subprocess.run([sys.executable, str(REPO_EXPERIMENTS / script), "--help"], capture_output=True,
                            text=True, check=True)
    assert "--data-dir" in result.stdout and "--out" in result.stdout
