"""One-parameter sweeps: every point recorded, a rerun resumes from the CSV, figure written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scnn.search import sweep as sweeps
from scnn.viz.plots import plot_sweep
from scnn.search.sweep import read_sweep, run_sweep, summarize_sweep
from scnn.train import DataConfig, TrainConfig
from scnn.train.run import SettingsMismatch
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


# --------------------------------------------------------------------------- a sweep folder says what it holds (issue 21)


def count_trainings(monkeypatch) -> list:
    calls = []
    original = sweeps.train
    monkeypatch.setattr(sweeps, "train", lambda *args, **kwargs: calls.append(args[0]) or original(*args, **kwargs))
    return calls


def tiny_base(**overrides) -> TrainConfig:
    return TrainConfig(**{"model": "model_b", "epochs": 1, "batch_size": 8, "model_overrides": {"num_steps": 2},
                          **overrides})


def test_sweep_folder_records_what_it_is(tmp_path):
    run_sweep("beta", [0.3], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["model"] == "model_b" and record["param"] == "beta" and record["values"] == [0.3]
    assert record["seeds"] == [0] and record["train_config"]["epochs"] == 1
    assert record["train_config"]["model_overrides"] == {"num_steps": 2} and "seed" not in record["train_config"]


def test_rerun_with_another_model_or_settings_is_refused_naming_them(tmp_path, monkeypatch):
    """The old Model B rows must not be reported as Model A: nothing trains, each difference is named."""
    run_sweep("beta", [0.3], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    calls = count_trainings(monkeypatch)
    with pytest.raises(SettingsMismatch) as refused:
        run_sweep("beta", [0.3], [0], tiny_base(model="model_a", epochs=3), DataConfig(), tmp_path,
                  data=synthetic_data(), progress=False)
    assert "model: 'model_b' -> 'model_a'" in str(refused.value)
    assert "train_config.epochs: 1 -> 3" in str(refused.value) and calls == []
    with pytest.raises(SettingsMismatch, match=r"data_config.split: 'official' -> 'speaker'"):
        run_sweep("beta", [0.3], [0], tiny_base(), DataConfig(split="speaker"), tmp_path, data=synthetic_data(),
                  progress=False)
    with pytest.raises(SettingsMismatch, match=r"train_config.model_overrides.num_steps: 2 -> 3"):
        run_sweep("beta", [0.3], [0], tiny_base(model_overrides={"num_steps": 3}), DataConfig(), tmp_path,
                  data=synthetic_data(), progress=False)


def test_sweep_of_another_parameter_is_refused_and_summaries_never_mix_parameters(tmp_path):
    run_sweep("beta", [0.5], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    with pytest.raises(SettingsMismatch, match=r"param: 'beta' -> 'threshold'"):
        run_sweep("threshold", [0.5], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(),
                  progress=False)
    # a folder mixed by an older version: "threshold = 0.5" is not the mean of beta rows
    rows = [{"param": "beta", "value": 0.5, "seed": s, "test_accuracy": 0.9, "val_accuracy": 0.9,
             "activation_sparsity": 0.5, "effective_acs_per_sample": 1.0} for s in (0, 1)]
    rows.append({**rows[0], "param": "threshold", "test_accuracy": 0.1})
    summary = summarize_sweep(rows)
    assert [(row["param"], row["value"], row["seeds"]) for row in summary] == [("beta", 0.5, 2), ("threshold", 0.5, 1)]
    assert summary[1]["test_accuracy_mean"] == 0.1


def test_more_values_and_seeds_extend_the_sweep(tmp_path, monkeypatch):
    run_sweep("beta", [0.3], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    calls = count_trainings(monkeypatch)
    rows = run_sweep("beta", [0.3, 0.9], [0, 1], tiny_base(threads=1), DataConfig(cache_dir=str(tmp_path)), tmp_path,
                     data=synthetic_data(), progress=False)  # threads and the cache folder change no result
    assert len(calls) == 3 and len(rows) == 4
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["values"] == [0.3, 0.9] and record["seeds"] == [0, 1]


def test_string_valued_sweep_keeps_its_types_and_resumes(tmp_path, monkeypatch):
    """A sweep over the surrogate ('atan', 'fast_sigmoid') resumes: values stay strings through the CSV."""
    values = ["atan", "fast_sigmoid"]
    first = run_sweep("surrogate", values, [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(),
                      progress=False)
    assert read_sweep(tmp_path / "sweep.csv") == first
    calls = count_trainings(monkeypatch)
    rows = run_sweep("surrogate", values, [0, 1], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(),
                     progress=False)
    assert [c.model_overrides["surrogate"] for c in calls] == values and all(c.seed == 1 for c in calls)
    assert [row["value"] for row in rows] == ["atan", "fast_sigmoid"] * 2
    assert [(row["value"], row["seeds"]) for row in summarize_sweep(rows)] == [("atan", 2), ("fast_sigmoid", 2)]
    assert (tmp_path / "surrogate=atan" / "seed1" / "results.json").exists()


@pytest.mark.parametrize("text, value", [("0.5", 0.5), ("10", 10), ("atan", "atan"), ("True", True),
                                         ("1e-05", 1e-5), ("None", None)])
def test_values_round_trip_through_the_csv(text, value):
    assert sweeps.parse_value(text) == value and type(sweeps.parse_value(text)) is type(value)
    assert sweeps.parse_value(sweeps._csv_text(value)) == value
    assert sweeps.parse_value("1", known=["1", 2]) == "1"  # the record's own value wins


def test_truncated_csv_line_is_named_by_file_and_line_and_the_rest_loads(tmp_path, monkeypatch):
    from scnn import faults

    rows = run_sweep("beta", [0.3, 0.9], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(),
                     progress=False)
    csv_path = tmp_path / "sweep.csv"
    line = faults.cut_last_line(csv_path)
    assert line == 3
    with pytest.warns(sweeps.DamagedSweepRow, match=rf"{csv_path}, line 3: damaged row left out"):
        assert read_sweep(csv_path) == rows[:1]
    calls = count_trainings(monkeypatch)
    with pytest.warns(sweeps.DamagedSweepRow):
        again = run_sweep("beta", [0.3, 0.9], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(),
                          progress=False)
    assert [c.model_overrides["beta"] for c in calls] == [0.9]  # the damaged point is redone (from its last.pt)
    assert again[1]["test_accuracy"] == rows[1]["test_accuracy"] and read_sweep(csv_path) == again


def test_damaged_values_are_reported_not_raised(tmp_path):
    csv_path = tmp_path / "sweep.csv"
    header = ",".join(sweeps.SWEEP_COLUMNS)
    csv_path.write_text(f"{header}\nbeta,0.3,0,0.9,0.8,0.5,1,1,1,1,2.0\nbeta,0.5,0,zero,0.8,0.5,1,1,1,1,2.0\n"
                        "beta,0.7,0,0.9,0.8,0.5,1,1,1,1,2.0,extra\nbeta,0.9,1,0.9,0.8,0.5,1,1,1,1,2.0\n")
    with pytest.warns(sweeps.DamagedSweepRow) as warned:
        rows = read_sweep(csv_path)
    assert [row["value"] for row in rows] == [0.3, 0.9]
    messages = [str(w.message) for w in warned]
    assert any("line 3" in m and "'zero' is not a number" in m for m in messages)
    assert any("line 4" in m and "12 fields where the header has 11" in m for m in messages)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv, line 1: not a sweep CSV header"):
        read_sweep(tmp_path / "other.csv")


def test_sweep_folder_of_an_older_version_is_checked_through_its_points(tmp_path):
    run_sweep("beta", [0.3], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    (tmp_path / "sweep.json").unlink()  # as an older version left it
    with pytest.raises(SettingsMismatch, match="model: 'model_b' -> 'model_a'"):
        run_sweep("beta", [0.3], [0], tiny_base(model="model_a"), DataConfig(), tmp_path, data=synthetic_data(),
                  progress=False)
    rows = run_sweep("beta", [0.3], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    assert len(rows) == 1 and (tmp_path / "sweep.json").exists()


def test_overwrite_replaces_the_sweep(tmp_path):
    run_sweep("beta", [0.3], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(), progress=False)
    (tmp_path / "notes.txt").write_text("kept")
    rows = run_sweep("threshold", [0.5], [0], tiny_base(), DataConfig(), tmp_path, data=synthetic_data(),
                     progress=False, overwrite=True)
    assert [row["param"] for row in rows] == ["threshold"] and not (tmp_path / "beta=0.3").exists()
    assert json.loads((tmp_path / "sweep.json").read_text())["param"] == "threshold"
    assert (tmp_path / "notes.txt").read_text() == "kept"


def test_list_valued_sweep_keeps_its_lists_and_resumes(tmp_path, monkeypatch):
    """A sweep over downsample ([1, 2], then [1, 1]) runs (a list once made an unhashable point key) and
    resumes: the values stay lists in the rows, in sweep.json and through sweep.csv."""
    base = tiny_base(model="ssm_small", model_overrides={"features": 8, "state_size": 8})
    first = run_sweep("downsample", [[1, 2]], [0], base, DataConfig(), tmp_path, data=synthetic_data(),
                      progress=False)
    assert first[0]["value"] == [1, 2] and read_sweep(tmp_path / "sweep.csv") == first
    assert json.loads((tmp_path / "sweep.json").read_text())["values"] == [[1, 2]]
    calls = count_trainings(monkeypatch)
    rows = run_sweep("downsample", [[1, 1], [1, 2]], [0], base, DataConfig(), tmp_path, data=synthetic_data(),
                     progress=False)
    assert [c.model_overrides["downsample"] for c in calls] == [[1, 1]], "the finished point is skipped"
    assert [(row["value"], row["seed"]) for row in rows] == [([1, 2], 0), ([1, 1], 0)]
    assert json.loads((tmp_path / "sweep.json").read_text())["values"] == [[1, 2], [1, 1]]
    assert read_sweep(tmp_path / "sweep.csv") == rows
    assert [row["value"] for row in summarize_sweep(rows)] == [[1, 1], [1, 2]]
    assert sweeps.value_key([1, 2]) == sweeps.value_key((1.0, 2.0)) != sweeps.value_key([2, 1])
