"""Cross-validation: the validation speaker rotates over the folds (each speaker validates once in
leave-one-speaker-out, never a fold's test speaker), and folds trained in parallel processes give the
summary of folds trained one after another, also when a killed serial CV is resumed in parallel."""

import json

import pytest

from scnn.data.fixtures import write_tone
from scnn.train.cv import cross_validate, plan_cv, rotated_validation
from tests.test_cv import SPEAKERS, comparable, config_of, tones  # noqa: F401  (tones is a fixture)


def test_leave_one_speaker_out_validates_every_speaker_once():
    folds = [["ann"], ["bob"], ["cy"], ["dee"]]
    assert rotated_validation(folds, 1) == [["bob"], ["cy"], ["dee"], ["ann"]]
    assert rotated_validation(folds, 2) == [["bob", "cy"], ["cy", "dee"], ["ann", "dee"], ["ann", "bob"]]
    assert rotated_validation(folds, 0) is None
    with pytest.raises(ValueError, match="num_val_speakers=3 leaves no training speaker"):
        rotated_validation(folds, 3)


def test_kfold_validation_comes_from_the_next_fold():
    folds = [["ann", "cy"], ["bob", "dee"], ["eve"]]
    chosen = rotated_validation(folds, 1)
    assert chosen == [["bob"], ["eve"], ["ann"]]
    for fold, val in zip(folds, chosen):
        assert not set(fold) & set(val)


def test_the_plan_and_the_fold_runs_use_the_rotated_validation(tmp_path, tones):  # noqa: F811
    config = config_of(tones, tmp_path / "cache", epochs=1)
    plan = plan_cv(config, None, 0)
    assert plan["fold_val_speakers"] == [["bob"], ["cy"], ["dee"], ["ann"]]
    summary = cross_validate(config, tmp_path / "loso", progress=False)
    assert [row["val_speakers"] for row in summary["folds"]] == ["bob", "cy", "dee", "ann"]
    assert sorted(row["test_speakers"] for row in summary["folds"]) == sorted(SPEAKERS)


@pytest.mark.slow  # spawned workers import torch: ~40 s of CPU
def test_parallel_folds_equal_serial_folds_and_resume_a_killed_serial_cv(tmp_path):
    # A built-in dataset (class folders, the speaker from the file name): the workers are spawned processes,
    # which know the datasets importing scnn registers.
    root = tmp_path / "words"
    for label, frequency in (("low", 300.0), ("mid", 700.0), ("high", 1500.0)):
        for number, speaker in enumerate(SPEAKERS):
            for take in range(4):
                write_tone(root / label / f"{speaker}_{take}.wav", frequency * (1 + 0.03 * number + 0.01 * take),
                           seed=10 * number + take)
    config = config_of("folders", tmp_path / "cache", epochs=2, data_dir=str(root),
                       group_pattern=r"(?P<group>[a-z]+)_\d+\.wav")
    serial = cross_validate(config, tmp_path / "serial", folds=2, fold_seed=1, progress=False)
    parallel = cross_validate(config, tmp_path / "parallel", folds=2, fold_seed=1, progress=False, parallel=2)
    assert comparable(parallel) == comparable(serial)
    for fold in ("fold1", "fold2"):
        assert (tmp_path / "parallel" / fold / "predictions.csv").read_text() == \
            (tmp_path / "serial" / fold / "predictions.csv").read_text()
    # killed in the middle of fold 1, then continued with two processes
    cut = cross_validate(config, tmp_path / "cut", folds=2, fold_seed=1, progress=False, stop_after_folds=1,
                         stop_after_epochs=1)
    assert cut == {"interrupted_in_fold": 1}
    resumed = cross_validate(config, tmp_path / "cut", folds=2, fold_seed=1, progress=False, resume=True, parallel=2)
    assert comparable(resumed) == comparable(serial)
    assert json.loads((tmp_path / "cut" / "cv_summary.json").read_text())["mean_test_accuracy"] == \
        serial["mean_test_accuracy"]


def test_parallel_is_checked(tmp_path, tones):  # noqa: F811
    config = config_of(tones, tmp_path / "cache", epochs=1)
    with pytest.raises(ValueError, match="at least 1"):
        cross_validate(config, tmp_path / "a", progress=False, parallel=0)
    with pytest.raises(ValueError, match="serial"):
        cross_validate(config, tmp_path / "b", progress=False, parallel=2, stop_after_folds=1)
