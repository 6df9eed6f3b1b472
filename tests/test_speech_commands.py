"""Speech Commands v2 on a generated tree in the release's layout (the real data is not used here)."""

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from scnn.data import DataConfig, Recording, dataset_listing, prepare_data, split_recordings
from scnn.data.fixtures import write_speech_commands_tree
from scnn.data.speech_commands import (CLASSES_12, SILENCE, UNKNOWN, WORDS_10, WORDS_35, background_noise_files,
                                       official_part_of, scan_speech_commands)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_commands")
    speakers = write_speech_commands_tree(root, {"train": 3, "val": 1, "test": 2}, takes=2, seconds=0.1)
    return root, speakers


def test_fixture_speakers_land_where_the_release_hash_puts_them(tree):
    root, speakers = tree
    for part, ids in speakers.items():
        assert all(official_part_of(f"{speaker}_nohash_3.wav") == part for speaker in ids)
    assert sum(official_part_of(f"{n:08x}_nohash_0.wav") == "train" for n in range(2000)) in range(1500, 1700)


def test_35_class_labels_speakers_and_official_parts(tree):
    root, speakers = tree
    listing = dataset_listing(DataConfig(dataset="speech_commands", data_dir=str(root)))
    assert listing.class_names == list(WORDS_35) and len(WORDS_35) == 35
    assert len(listing.recordings) == 35 * 6 * 2 and listing.skipped == []
    for recording in listing.recordings:
        assert recording.path.parent.name == WORDS_35[recording.label]
        assert recording.path.name.startswith(recording.speaker + "_nohash_")
        assert recording.speaker in speakers[recording.official_part]
    listed_val = set((root / "validation_list.txt").read_text().split())
    assert {f"{r.path.parent.name}/{r.path.name}" for r in listing.recordings if r.official_part == "val"} == listed_val


def test_official_split_uses_the_validation_list_and_is_speaker_disjoint(tree):
    root, _ = tree
    listing = dataset_listing(DataConfig(dataset="speech_commands", data_dir=str(root)))
    split = split_recordings(listing.recordings, "official", val_fraction=0.5, seed=3)
    assert (len(split.train), len(split.val), len(split.test)) == (35 * 3 * 2, 35 * 1 * 2, 35 * 2 * 2)
    parts = [{r.speaker for r in part} for part in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_official_split_without_a_validation_part_still_carves_it_from_train():
    recordings = [Recording(Path(f"{i}.wav"), i % 2, official_part="test" if i < 4 else "train") for i in range(24)]
    split = split_recordings(recordings, "official", val_fraction=0.25, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (16, 4, 4)  # round(0.25 * 10) = 2 per class
    with_val = [Recording(r.path, r.label, official_part="val" if i in (5, 6) else r.official_part)
                for i, r in enumerate(recordings)]
    split = split_recordings(with_val, "official", val_fraction=0.25, seed=0)
    assert sorted(str(r.path) for r in split.val) == ["5.wav", "6.wav"] and len(split.train) == 18


def test_twelve_class_protocol(tree, tmp_path):
    root, _ = tree
    config = DataConfig(dataset="speech_commands_12", data_dir=str(root), cache_dir=str(tmp_path))
    listing = dataset_listing(config)
    assert listing.class_names == list(CLASSES_12) and len(CLASSES_12) == 12
    for part, speakers in (("train", 3), ("val", 1), ("test", 2)):
        counts = Counter(listing.class_names[r.label] for r in listing.recordings if r.official_part == part)
        words = 10 * speakers * 2
        assert all(counts[word] == speakers * 2 for word in WORDS_10)
        assert counts[UNKNOWN] == math.ceil(0.1 * words) and counts[SILENCE] == math.ceil(0.1 * words)
    for recording in listing.recordings:
        name = listing.class_names[recording.label]
        if name == UNKNOWN:
            assert recording.path.parent.name in WORDS_35 and recording.path.parent.name not in WORDS_10
        elif name == SILENCE:
            audio, rate = soundfile.read(recording.path)
            assert rate == 16000 and audio.shape == (16000,) and recording.speaker is None
        else:
            assert recording.path.parent.name == name
    again = dataset_listing(config)  # same seed: same unknown clips, same silence files and content
    assert [r.path for r in again.recordings] == [r.path for r in listing.recordings]
    other = dataset_listing(DataConfig(dataset="speech_commands_12", data_dir=str(root), cache_dir=str(tmp_path),
                                       split_seed=1))
    silence = [r.path for r in listing.recordings if r.label == 0]
    other_silence = [r.path for r in other.recordings if r.label == 0]
    assert not np.array_equal(soundfile.read(silence[0])[0], soundfile.read(other_silence[0])[0])


def test_background_noise_listed_for_augmentation(tree, tmp_path):
    root, _ = tree
    assert [p.name for p in background_noise_files(root)][:2] == ["doing_the_dishes.wav", "dude_miaowing.wav"]
    assert len(background_noise_files(root)) == 6
    with pytest.raises(FileNotFoundError, match="_background_noise_"):
        background_noise_files(tmp_path)


def test_bad_trees_fail_naming_every_problem(tmp_path, monkeypatch):
    root = tmp_path / "sc"
    write_speech_commands_tree(root, {"train": 1, "val": 1, "test": 1}, seconds=0.05)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SCNN_SPEECH_COMMANDS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="downloading is off; pass --data-dir DIR"):
        dataset_listing(DataConfig(dataset="speech_commands", download=False))
    with pytest.raises(FileNotFoundError, match=r"sc/nothere does not exist; pass --data-dir"):
        dataset_listing(DataConfig(dataset="speech_commands", data_dir=str(tmp_path / "sc" / "nothere")))
    (root / "testing_list.txt").write_text("yes/nobody_nohash_0.wav\n" + (root / "testing_list.txt").read_text()
                                           + "cat/gone_nohash_1.wav\n")
    with pytest.raises(ValueError, match=r"2 files: testing_list.txt:1: lists yes/nobody_nohash_0.wav.*"
                                         r"cat/gone_nohash_1.wav, which does not exist"):
        scan_speech_commands(root)
    (root / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks testing_list.txt"):
        dataset_listing(DataConfig(dataset="speech_commands", data_dir=str(root)))
    (root / "testing_list.txt").write_text("")
    (root / "cat" / "oops.wav").write_bytes(b"")
    (root / "extra").mkdir()
    recordings, skipped = scan_speech_commands(root)
    assert sorted(Path(path).name for path, _ in skipped) == ["extra", "oops.wav"]
    for word in ("wow", "zero"):
        for path in (root / word).iterdir():
            path.unlink()
        (root / word).rmdir()
    with pytest.raises(ValueError, match="lacks 2 of the 35 v2 word folders: wow, zero"):
        scan_speech_commands(root)


def test_prepare_data_end_to_end(tmp_path):
    root = tmp_path / "sc"
    write_speech_commands_tree(root, {"train": 2, "val": 1, "test": 1}, takes=1, seconds=0.1)
    data = prepare_data(DataConfig(dataset="speech_commands_12", data_dir=str(root), cache_dir=str(tmp_path),
                                   feature_overrides={"sample_rate": 16000, "n_fft": 512, "hop_length": 256}),
                        progress=False)
    # train: 10 words x 2 speakers + ceil(10 %) unknown + ceil(10 %) silence; val and test: 10 + 1 + 1
    assert data.train[0].shape == (20 + 2 + 2, 1, 32, 32) and len(data.val[1]) == 12 and len(data.test[1]) == 12
    assert data.class_names[0] == SILENCE
    assert Counter(data.val[1].tolist()) == Counter(range(12))
