"""Bad input and changed data: misnamed and unreadable files reported all at once, --skip-bad, the download
failure's message, and evaluation against the test set a checkpoint recorded (issues 20 and 21)."""

import csv
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from scnn.data import DataConfig, DownloadError, list_class_folders, locate_fsdd, prepare_data
from scnn.data import fsdd as fsdd_module
from scnn.features import AudioFileError
from scnn.train import TrainConfig, evaluate_checkpoint, train

DIGITS, SPEAKERS, TAKES = range(10), ("ann", "bob"), range(10)


def tone(path: Path, digit: int, take: int, seconds: float = 0.3) -> Path:
    """A recording of ``digit``: a tone at 200 + 80 * digit Hz with a little take-dependent noise."""
    t = np.arange(int(8000 * seconds)) / 8000
    noise = np.random.default_rng(take * 10 + digit).normal(0, 0.01, t.size)
    soundfile.write(str(path), 0.3 * np.sin(2 * np.pi * (200 + 80 * digit) * t) + noise, 8000)
    return path


def make_fsdd(folder: Path) -> Path:
    """An FSDD-like folder: 10 digits x 2 speakers x takes 0-9 (takes 0-4 are the official test split)."""
    folder.mkdir(parents=True, exist_ok=True)
    for digit in DIGITS:
        for speaker in SPEAKERS:
            for take in TAKES:
                tone(folder / f"{digit}_{speaker}_{take}.wav", digit, take)
    return folder


def add_bad_files(folder: Path) -> dict[str, str]:
    """Bad files of every kind among the recordings; returns {file name: expected reason (regex)}."""
    (folder / "5_ann_20.wav").write_bytes(b"")
    soundfile.write(str(folder / "5_ann_21.wav"), np.zeros(0), 8000)  # a WAV header and no samples
    (folder / "5_ann_22.wav").write_text("this is a text file, not audio\n" * 5)
    nan = np.full(2400, np.nan, dtype=np.float32)
    soundfile.write(str(folder / "5_ann_23.wav"), nan, 8000, subtype="FLOAT")
    tone(folder / "seven-by-jackson.wav", 7, 0)  # good audio, but its name carries no label
    return {"5_ann_20.wav": "empty file", "5_ann_21.wav": "no audio samples", "5_ann_22.wav": "cannot read audio",
            "5_ann_23.wav": "NaN", "seven-by-jackson.wav": "does not match FSDD"}


def data_config(folder: Path, cache: Path, **overrides) -> DataConfig:
    return DataConfig(data_dir=str(folder), cache_dir=str(cache), download=False, **overrides)


# --------------------------------------------------------------------------- bad files, all at once


def test_every_bad_file_is_named_in_one_error(tmp_path):
    folder = make_fsdd(tmp_path / "fsdd")
    expected = add_bad_files(folder)
    with pytest.raises(AudioFileError) as caught:
        prepare_data(data_config(folder, tmp_path / "cache"), progress=False)
    message = str(caught.value)
    assert "\n" not in message and "--skip-bad" in message and message.startswith(f"{folder}: cannot use 5 files:")
    for name, reason in expected.items():
        assert name in message, name
    reasons = {Path(path).name: reason for path, reason in caught.value.problems}
    assert set(reasons) == set(expected)
    for name, pattern in expected.items():
        assert re.search(pattern, reasons[name]), (name, reasons[name])


def test_many_bad_files_show_the_first_few_and_a_count(tmp_path):
    folder = make_fsdd(tmp_path / "fsdd")
    for take in range(20, 29):
        (folder / f"1_bob_{take}.wav").write_bytes(b"")
    with pytest.raises(AudioFileError) as caught:
        prepare_data(data_config(folder, tmp_path / "cache"), progress=False)
    message = str(caught.value)
    assert message.count("empty file") == 5 and "... and 4 more" in message and len(caught.value.problems) == 9


def test_skip_bad_leaves_out_misnamed_and_unreadable_files_and_lists_them(tmp_path):
    folder = make_fsdd(tmp_path / "fsdd")
    expected = add_bad_files(folder)
    with pytest.warns(UserWarning, match="skip_bad left out 5 files"):
        data = prepare_data(data_config(folder, tmp_path / "cache", skip_bad=True), progress=False)
    assert {Path(path).name for path, _ in data.skipped} == set(expected)
    assert len(data.test[1]) == 100 and len(data.train[1]) + len(data.val[1]) == 100  # the good ones, all of them
    assert not any("seven-by-jackson" in path for path in data.test_files)
    # Through train(): results.json lists every skipped file with its reason.
    with pytest.warns(UserWarning, match="seven-by-jackson.wav: file name does not match"):
        results = train(TrainConfig(model="control_cnn", epochs=1, batch_size=16, threads=1),
                        data_config(folder, tmp_path / "cache", skip_bad=True), tmp_path / "run", progress=False)
    listed = json.loads((tmp_path / "run" / "results.json").read_text())["skipped_files"]
    assert listed == results["skipped_files"]
    assert {Path(entry["file"]).name: entry["reason"] for entry in listed}.keys() == expected.keys()
    assert all(entry["reason"] and str(folder) not in entry["reason"] for entry in listed), "reasons without paths"


def test_class_folders_report_stray_audio(tmp_path):
    root = tmp_path / "words"
    for label in ("no", "yes"):
        (root / label).mkdir(parents=True)
        for take in range(6):
            tone(root / label / f"spk{take}_nohash_{take}.wav", 3 if label == "yes" else 6, take)
    tone(root / "stray.wav", 1, 0)
    with pytest.raises(ValueError, match="stray.wav: audio file outside the class folders"):
        list_class_folders(root)
    config = DataConfig(data_dir=str(root), dataset="folders", split="random", test_fraction=0.34,
                        cache_dir=str(tmp_path / "cache"), download=False)
    with pytest.raises(AudioFileError, match="stray.wav"):
        prepare_data(config, progress=False)
    config.skip_bad = True
    with pytest.warns(UserWarning, match="stray.wav"):
        data = prepare_data(config, progress=False)
    assert [Path(path).name for path, _ in data.skipped] == ["stray.wav"] and data.class_names == ["no", "yes"]


def test_download_failure_names_what_failed_and_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(fsdd_module.FSDD_ENV_VAR, raising=False)
    with pytest.raises(DownloadError) as caught:
        locate_fsdd(url="http://127.0.0.1:9/")  # the discard port: nothing listens, the connection is refused
    message = str(caught.value)
    assert "\n" not in message
    assert "cannot download FSDD v1.0.10 from http://127.0.0.1:9/" in message
    assert "--data-dir DIR" in message and "SCNN_DATA_DIR=DIR" in message
    assert "urlopen error" not in message, "the cause, not urllib's wrapper"
    assert not (tmp_path / "xdg" / "scnn" / "fsdd" / "recordings").exists()


# --------------------------------------------------------------------------- evaluation against the recorded test set


@pytest.fixture
def trained(tmp_path):
    """(data folder, feature cache, run folder) of one epoch of the control CNN on an FSDD-like folder."""
    folder, cache, run = make_fsdd(tmp_path / "fsdd"), tmp_path / "cache", tmp_path / "run"
    train(TrainConfig(model="control_cnn", epochs=2, batch_size=16, threads=1, lr=5e-3), data_config(folder, cache),
          run, progress=False)
    return folder, cache, run


def read_predictions(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_checkpoint_records_its_test_set(trained):
    folder, _, run = trained
    recorded = torch.load(run / "best.pt", weights_only=True)["test_set"]
    assert len(recorded["files"]) == len(recorded["sha256"]) == 100
    assert recorded["files"][0] == "0_ann_0.wav" and all(int(name.split("_")[2][:-4]) < 5 for name in recorded["files"])
    assert recorded["sha256"][0] == fsdd_module.sha256_of(folder / "0_ann_0.wav")
    assert json.loads((run / "results.json").read_text())["test_set_digest"] == recorded["digest"]


def test_evaluation_warns_on_changed_content_and_does_not_use_the_stale_cache(trained, tmp_path):
    folder, _, run = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same data: no warning at all
        first = evaluate_checkpoint(run / "best.pt", tmp_path / "eval1", progress=False)
    assert first["test_set"]["differences"] == [] and first["test_set"]["digest"] == first["test_set"]["recorded_digest"]
    target = folder / "3_ann_2.wav"
    before = target.stat()
    tone(target, 8, 2)  # another digit's audio: the same length, so the same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.warns(UserWarning, match=r"1 test recordings differ in content .*3_ann_2.wav"):
        second = evaluate_checkpoint(run / "best.pt", tmp_path / "eval2", progress=False)
    assert second["test_set"]["digest"] != second["test_set"]["recorded_digest"]
    rows = {Path(row["file"]).name: row for row in read_predictions(tmp_path / "eval1" / "predictions.csv")}
    changed = {Path(row["file"]).name: row for row in read_predictions(tmp_path / "eval2" / "predictions.csv")}
    assert changed["3_ann_2.wav"]["score_3"] != rows["3_ann_2.wav"]["score_3"], "features of the new content"
    assert changed["4_bob_1.wav"] == rows["4_bob_1.wav"], "an unchanged recording scores the same"


def test_evaluation_warns_on_missing_recordings_and_refuses_an_empty_test_set(trained, tmp_path):
    folder, _, run = trained
    for name in ("2_ann_0.wav", "6_bob_4.wav"):
        (folder / name).unlink()
    with pytest.warns(UserWarning, match=r"2 of the 100 test recordings .* missing .*2_ann_0.wav, 6_bob_4.wav"):
        results = evaluate_checkpoint(run / "best.pt", tmp_path / "eval", progress=False)
    assert results["num_test"] == 98 and len(read_predictions(tmp_path / "eval" / "predictions.csv")) == 98
    for path in folder.glob("*.wav"):
        if int(path.stem.split("_")[2]) < 5:
            path.unlink()
    with pytest.raises(ValueError, match=r"no test recordings found in .*fsdd \(the checkpoint recorded 100\)"):
        evaluate_checkpoint(run / "best.pt", tmp_path / "empty", progress=False)
    assert not (tmp_path / "empty" / "results.json").exists()


def test_predictions_csv_matches_the_confusion_matrix(trained, tmp_path):
    folder, _, run = trained
    results = evaluate_checkpoint(run / "best.pt", tmp_path / "eval", progress=False)
    rows = read_predictions(tmp_path / "eval" / "predictions.csv")
    classes = [str(d) for d in DIGITS]
    assert list(rows[0]) == ["file", "label", "prediction", *[f"score_{c}" for c in classes]]
    assert len(rows) == results["num_test"] == 100
    assert sorted(Path(row["file"]).name for row in rows) == sorted(
        f"{d}_{s}_{t}.wav" for d in DIGITS for s in SPEAKERS for t in range(5))
    confusion = np.zeros((10, 10), dtype=int)
    for row in rows:
        assert Path(row["file"]).name.split("_")[0] == row["label"]
        scores = [float(row[f"score_{c}"]) for c in classes]
        assert classes[int(np.argmax(scores))] == row["prediction"]
        confusion[classes.index(row["label"]), classes.index(row["prediction"])] += 1
    assert confusion.tolist() == results["confusion_matrix"]
    assert results["test_accuracy"] == pytest.approx(np.trace(confusion) / 100)
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["confusion_matrix"] == results["confusion_matrix"] and saved["schema_version"] == 1
    assert saved["kind"] == "evaluate" and (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 0
    trained_results = json.loads((run / "results.json").read_text())
    assert trained_results["schema_version"] == 1 and trained_results["kind"] == "train"
    assert trained_results["test_accuracy"] == pytest.approx(results["test_accuracy"])
