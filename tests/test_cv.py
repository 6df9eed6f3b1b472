"""Cross-validation by speaker (scnn.train.cv, `scnn cv`): folds are speaker-disjoint normal run folders,
the summary adds up, a rerun with other settings is refused, and a CV interrupted mid-fold and resumed
gives the summary of an uninterrupted one."""

import json

import numpy as np
import pytest

from scnn.cli import main
from scnn.data import DATASETS, DatasetListing, Recording, register_dataset
from scnn.data.fixtures import write_tone
from scnn.io import load_checkpoint
from scnn.result_tables import read_table
from scnn.train.cv import cross_validate, plan_cv
from scnn.train.run import RunFolderError, SettingsMismatch
from scnn.train.run_config import RunConfig

SPEAKERS = ("ann", "bob", "cy", "dee")


@pytest.fixture
def tones(tmp_path):
    """Tones of three pitches by four 'speakers' (each a slight pitch offset), 4 takes each."""
    folder = tmp_path / "tones"
    folder.mkdir()
    recordings = []
    for label, frequency in enumerate((300.0, 700.0, 1500.0)):
        for number, speaker in enumerate(SPEAKERS):
            for take in range(4):
                path = folder / f"{label}_{speaker}_{take}.wav"
                write_tone(path, frequency * (1 + 0.03 * number + 0.01 * take), seed=10 * number + take)
                recordings.append(Recording(path, label, speaker, take))

    @register_dataset("cv_tones")
    def listing(config) -> DatasetListing:
        return DatasetListing(list(recordings), ["low", "mid", "high"], folder)

    yield "cv_tones"
    DATASETS.pop("cv_tones")


def config_of(dataset, cache, epochs=2, **data):
    return RunConfig.from_dict({
        "model": {"name": "6C3-16FC-3FC", "num_steps": 2},
        "data": {"dataset": dataset, "split": "random", "cache_dir": str(cache), "num_val_speakers": 1, **data},
        "train": {"epochs": epochs, "batch_size": 8, "threads": 1, "seed": 0},
    })


def comparable(summary):
    """The summary without wall times (which differ between runs)."""
    rows = [{k: v for k, v in row.items() if k != "seconds_per_epoch"} for row in summary["folds"]]
    return {**{k: v for k, v in summary.items() if k != "folds"}, "folds": rows}


def test_kfold_is_speaker_disjoint_and_resumes_to_the_uninterrupted_summary(tmp_path, tones):
    config = config_of(tones, tmp_path / "cache")
    whole = cross_validate(config, tmp_path / "whole", folds=2, fold_seed=3, progress=False)
    assert whole["num_folds"] == 2 and sorted(s for row in whole["folds"] for s in row["test_speakers"].split(";")) \
        == list(SPEAKERS)
    for row in whole["folds"]:
        checkpoint = load_checkpoint(tmp_path / "whole" / row["run"] / "best.pt")
        test = set(row["test_speakers"].split(";"))
        val = set(row["val_speakers"].split(";"))
        assert checkpoint["data_config"]["split"] == "speaker"
        assert set(checkpoint["data_config"]["holdout_speaker"].split(",")) == test
        assert len(val) == 1 and not val & test, "validation: one speaker neither tested nor trained on"
        results = json.loads((tmp_path / "whole" / row["run"] / "results.json").read_text())
        # 3 classes x 4 takes per speaker: 2 test speakers, 1 validation, the other trains
        assert results["split_sizes"] == {"train": 12, "val": 12, "test": 24} and row["test_samples"] == 24
    assert whole["mean_test_accuracy"] == pytest.approx(np.mean([r["test_accuracy"] for r in whole["folds"]]))
    assert whole["std_test_accuracy"] == pytest.approx(np.std([r["test_accuracy"] for r in whole["folds"]], ddof=1))
    assert sum(v["samples"] for v in whole["per_speaker"].values()) == 48
    assert sum(v["samples"] for v in whole["per_class"].values()) == 48
    pooled = sum(v["accuracy"] * v["samples"] for v in whole["per_speaker"].values()) / 48
    assert whole["pooled_test_accuracy"] == pytest.approx(pooled)
    assert read_table(tmp_path / "whole" / "cv.csv", "cv") == whole["folds"]
    assert (tmp_path / "whole" / "cv_accuracy.png").stat().st_size > 0

    # interrupted: fold 1 finished, fold 2 stopped after 1 of its 2 epochs; then resumed
    interrupted = cross_validate(config, tmp_path / "cut", folds=2, fold_seed=3, progress=False,
                                 stop_after_folds=2, stop_after_epochs=1)
    assert interrupted == {"interrupted_in_fold": 2}
    assert (tmp_path / "cut" / "fold2" / "last.pt").exists() and not (tmp_path / "cut" / "fold2" / "results.json").exists()
    with pytest.raises(RunFolderError, match="already holds a cross-validation.*--resume"):
        cross_validate(config, tmp_path / "cut", folds=2, fold_seed=3, progress=False)
    with pytest.raises(SettingsMismatch, match=r"run_config.train.epochs: 2 -> 3"):
        cross_validate(config_of(tones, tmp_path / "cache", epochs=3), tmp_path / "cut", folds=2, fold_seed=3,
                       resume=True, progress=False)
    with pytest.raises(SettingsMismatch, match=r"fold_seed: 3 -> 4"):
        cross_validate(config, tmp_path / "cut", folds=2, fold_seed=4, resume=True, progress=False)
    fold1 = (tmp_path / "cut" / "fold1" / "results.json").stat().st_mtime_ns
    resumed = cross_validate(config, tmp_path / "cut", folds=2, fold_seed=3, resume=True, progress=False)
    assert comparable(resumed) == comparable(whole)
    assert (tmp_path / "cut" / "fold1" / "results.json").stat().st_mtime_ns == fold1, "finished fold read back"


def test_leave_one_speaker_out_through_the_command(tmp_path, tones, capsys):
    out = tmp_path / "loso"
    args = ["cv", "--no-progress", "--out", str(out), "--threads", "1", "model.name=6C3-16FC-3FC",
            "model.num_steps=2", "train.epochs=1", "train.batch_size=8", f"data.dataset={tones}", "data.split=random",
            f"data.cache_dir={tmp_path / 'cache'}", "data.num_val_speakers=1"]
    summary = main(args)
    assert [row["test_speakers"] for row in summary["folds"]] == list(SPEAKERS)
    assert summary["protocol"] == "leave_one_speaker_out"
    for row in summary["folds"]:  # one speaker per fold: its accuracy is the speaker's
        assert summary["per_speaker"][row["test_speakers"]]["accuracy"] == pytest.approx(row["test_accuracy"])
        assert row["test_samples"] == 12 and row["val_speakers"] not in (None, row["test_speakers"])
    saved = json.loads((out / "cv_summary.json").read_text())
    assert saved["per_speaker"] == summary["per_speaker"] and "Per speaker" in (out / "cv.md").read_text()
    with pytest.raises(SystemExit):
        main(args)  # the folder holds a CV: refused without --resume
    assert "pass --resume" in capsys.readouterr().err


def test_plan_errors_name_the_problem(tmp_path, tones):
    with pytest.raises(ValueError, match="5 folds but only 4 speakers"):
        plan_cv(config_of(tones, tmp_path), 5, 0)
    with pytest.raises(ValueError, match="data.val_speakers \\(ann\\) would be some fold's test speakers"):
        plan_cv(config_of(tones, tmp_path, num_val_speakers=0, val_speakers="ann"), None, 0)
    with pytest.raises(ValueError, match=r"cannot tell the speaker of 48 files: .*0_ann_0.wav: file name does not match"):
        plan_cv(config_of(tones, tmp_path, group_pattern=r"(?P<group>[a-z]+)\.wav"), None, 0)
    # the pattern's group replaces the dataset's speakers: here the take number
    plan = plan_cv(config_of(tones, tmp_path, group_pattern=r"\d_[a-z]+_(?P<group>\d)\.wav"), None, 0)
    assert plan["fold_speakers"] == [["0"], ["1"], ["2"], ["3"]]


@pytest.mark.slow
def test_sigkill_in_a_fold_then_resume_gives_the_uninterrupted_summary(tmp_path):
    """`scnn cv` in a child process, SIGKILLed once the second fold has written a checkpoint; the resumed CV's
    summary equals an uninterrupted one (the dataset is "recordings": speaker folders, label in the name)."""
    import os
    import sys

    from scnn import faults

    root = tmp_path / "voices"
    for number, speaker in enumerate(SPEAKERS):
        (root / speaker).mkdir(parents=True)
        for label, frequency in enumerate((300.0, 700.0, 1500.0)):
            for take in range(4):
                write_tone(root / speaker / f"{label}_{take}.wav", frequency * (1 + 0.03 * number + 0.01 * take),
                           seed=10 * number + take)
    overrides = ["model.name=6C3-16FC-3FC", "model.num_steps=2", "train.epochs=6", "train.batch_size=8",
                 "data.dataset=recordings", f"data.data_dir={root}", r"data.label_pattern=(?P<label>\d)_\d\.wav",
                 "data.split=random", f"data.cache_dir={tmp_path / 'cache'}", "data.num_val_speakers=1"]
    whole = main(["cv", "--no-progress", "--folds", "2", "--threads", "1", "--out", str(tmp_path / "whole"),
                  *overrides])
    cut = tmp_path / "cut"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = faults.start([sys.executable, "-m", "scnn", "cv", "--no-progress", "--folds", "2", "--threads", "1",
                            "--out", str(cut), *overrides], env=env)
    reached = faults.wait_for(lambda: (cut / "fold2" / "last.pt").exists() or process.poll() is not None, 120)
    output = faults.kill(process)
    assert reached and process.returncode != 0, f"the CV ended before the kill:\n{output}"
    assert (cut / "fold1" / "results.json").exists() and not (cut / "fold2" / "results.json").exists()
    resumed = main(["cv", "--no-progress", "--folds", "2", "--threads", "1", "--out", str(cut), "--resume",
                    *overrides])
    assert comparable(resumed) == comparable(whole)


def test_refit_trains_on_the_validation_speakers_too_and_keeps_its_last_epoch(tmp_path, tones):
    config = config_of(tones, tmp_path / "cache", epochs=3)
    summary = cross_validate(config, tmp_path / "refit", folds=None, progress=False, refit=True)
    plain = cross_validate(config, tmp_path / "plain", folds=None, progress=False)
    assert summary["refit"] is not None and plain["refit"] is None
    validated = {**summary, "refit": None, "folds": [{**row, "refit_test_accuracy": None} for row in summary["folds"]]}
    assert comparable(validated) == comparable(plain), "the validated runs do not change"
    for row in summary["folds"]:
        folder = tmp_path / "refit" / row["run"] / "refit"
        checkpoint = load_checkpoint(folder / "best.pt")
        results = json.loads((folder / "results.json").read_text())
        # 3 classes x 4 takes per speaker: one test speaker, the other three (validation speaker included) train
        assert results["split_sizes"] == {"train": 36, "val": 0, "test": 12}
        assert checkpoint["data_config"]["holdout_speaker"] == row["test_speakers"]
        assert results["best_epoch"] == results["epochs_run"] == 3, "no validation set: the last epoch is kept"
        assert row["refit_test_accuracy"] == results["test_accuracy"]
        history = [json.loads(line) for line in (tmp_path / "refit" / row["run"] / "metrics.jsonl").read_text().splitlines()]
        assert row["final_val_accuracy"] == history[-1]["val_accuracy"]
    refit = summary["refit"]
    assert refit["mean_test_accuracy"] == pytest.approx(np.mean([r["refit_test_accuracy"] for r in summary["folds"]]))
    assert sum(v["samples"] for v in refit["per_speaker"].values()) == 48
    assert read_table(tmp_path / "refit" / "cv.csv", "cv") == summary["folds"]
    assert "Refit on the validation speakers too" in (tmp_path / "refit" / "cv.md").read_text()
    with pytest.raises(SettingsMismatch, match=r"refit: True -> False"):
        cross_validate(config, tmp_path / "refit", folds=None, resume=True, progress=False)
    # a refit added to a finished CV on resume: the validated folds are read back, the refits trained
    fold1 = (tmp_path / "plain" / "fold1" / "results.json").stat().st_mtime_ns
    added = cross_validate(config, tmp_path / "plain", folds=None, resume=True, progress=False, refit=True)
    assert comparable(added) == comparable(summary)
    assert (tmp_path / "plain" / "fold1" / "results.json").stat().st_mtime_ns == fold1


def test_a_resume_names_the_data_folder_either_way(tmp_path, monkeypatch):
    from scnn.train.cv import _comparable
    from scnn.train.run import setting_differences

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path / "data")
    plan = {"refit": False, "run_config": {"data": {"data_dir": str(tmp_path / "data"), "extra_train": None}}}
    relative = {"refit": False, "run_config": {"data": {"data_dir": "../data", "extra_train": None}}}
    assert setting_differences(_comparable(plan), _comparable(relative)) == []
    elsewhere = {"refit": False, "run_config": {"data": {"data_dir": "../other", "extra_train": None}}}
    assert setting_differences(_comparable(plan), _comparable(elsewhere)) == [
        f"run_config.data.data_dir: '{tmp_path / 'data'}' -> '{tmp_path / 'other'}'"]


def test_a_plan_of_an_older_version_resumes_with_todays_defaults(tmp_path):
    from scnn.train.cv import _comparable
    from scnn.train.run import setting_differences

    today = {"run_config": {"data": {"data_dir": str(tmp_path), "extra_train": None}, "train": {"eq_db": 0.0}}}
    older = {"run_config": {"data": {"data_dir": str(tmp_path)}, "train": {}}}  # written before those fields existed
    assert setting_differences(_comparable(older), _comparable(today)) == []
    assert setting_differences(_comparable(older), _comparable({**today, "refit": True})) == ["refit: False -> True"]
