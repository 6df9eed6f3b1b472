"""Dataset "recordings": a user's audio as class folders, speaker folders with the label in the file
name, or a CSV manifest; any sample rate (resampled once, cached by rate); any length (FeatureConfig.fit);
bad files named, or left out with skip_bad."""

from pathlib import Path

import numpy as np
import pytest

from scnn.data import DataConfig, prepare_data
from scnn.data.fixtures import write_tone
from scnn.data.recordings import class_names_of
from scnn.features.mfcc import AudioFileError, FeatureConfig, cache_key, extract_features

PITCH = {"one": 300.0, "two": 700.0, "three": 1500.0}


def tone(path: Path, frequency: float, rate: int = 8000, seconds: float = 0.3, seed: int = 0) -> Path:
    return write_tone(path, frequency, seed=seed, seconds=seconds, rate=rate)


def prepare(tmp_path, **data):
    data = {"split": "random", "test_fraction": 0.25, "val_fraction": 0.0, **data}
    config = DataConfig(dataset="recordings", cache_dir=str(tmp_path / "cache"), **data)
    return prepare_data(config, progress=False)


def test_class_folders(tmp_path):
    for label, frequency in PITCH.items():
        for take in range(4):
            tone(tmp_path / "data" / label / f"{take}.wav", frequency, seed=take)
    data = prepare(tmp_path, data_dir=str(tmp_path / "data"))
    assert data.class_names == ["one", "three", "two"]
    assert (len(data.train[1]), len(data.test[1])) == (9, 3)
    tone(tmp_path / "data" / "stray.wav", 300.0)
    with pytest.raises(AudioFileError, match="stray.wav: audio file outside the class folders"):
        prepare(tmp_path, data_dir=str(tmp_path / "data"))


def test_speaker_folders_with_the_label_in_the_file_name(tmp_path):
    root = tmp_path / "data"
    for number, speaker in enumerate(("ann", "bob", "cy")):
        for label, frequency in PITCH.items():
            for take in range(2):
                tone(root / speaker / f"{label}_{take}.wav", frequency * (1 + 0.02 * number), seed=take)
    tone(root / "bob" / "four-0.wav", 900.0)
    (root / "cy" / "two_9.wav").write_bytes(b"not audio at all")
    pattern = r"(?P<label>[a-z]+)_\d+\.wav"
    with pytest.raises(AudioFileError) as error:
        prepare(tmp_path, data_dir=str(root), label_pattern=pattern, split="speaker", holdout_speaker="bob")
    message = str(error.value)  # both kinds of bad file in one message, each named
    assert "2 files" in message and "bob/four-0.wav: file name does not match data.label_pattern" in message
    assert "cy/two_9.wav" in message and "--skip-bad" in message
    with pytest.warns(UserWarning, match="skip_bad left out 2 files"):
        data = prepare(tmp_path, data_dir=str(root), label_pattern=pattern, split="speaker", holdout_speaker="bob",
                       skip_bad=True)
    assert data.class_names == ["one", "three", "two"] and len(data.skipped) == 2
    assert len(data.test[1]) == 6 and all("/bob/" in file for file in data.test_files), "speaker = folder"
    assert len(data.train[1]) == 12  # ann 6 + cy 6 (its unreadable seventh left out)
    with pytest.raises(ValueError, match="has no named group \\(\\?P<label>"):
        DataConfig(dataset="recordings", label_pattern=r"[a-z]+_\d+\.wav")


def test_speaker_from_the_pattern_and_numeric_labels(tmp_path):
    root = tmp_path / "flat"
    for label in (2, 10):
        for speaker in ("ann", "bob"):
            tone(root / f"{speaker}-{label}.wav", 200.0 * label)
    data = prepare(tmp_path, data_dir=str(root), label_pattern=r"(?P<speaker>[a-z]+)-(?P<label>\d+)\.wav",
                   split="speaker", holdout_speaker="ann")
    assert data.class_names == ["2", "10"] and [Path(f).name for f in data.test_files] == ["ann-10.wav", "ann-2.wav"]
    assert data.test[1].tolist() == [1, 0]
    assert class_names_of(["b", "a", "b"]) == ["a", "b"]


def test_manifest(tmp_path):
    for label, frequency in PITCH.items():
        for speaker in ("ann", "bob"):
            tone(tmp_path / "audio" / f"{label}-{speaker}.wav", frequency)
    lines = ["path,label,speaker"] + [f"audio/{label}-{speaker}.wav,{label},{speaker}"
                                      for label in PITCH for speaker in ("ann", "bob")]
    (tmp_path / "list.csv").write_text("\n".join(lines + ["audio/gone.wav,one,ann"]) + "\n")
    with pytest.raises(AudioFileError, match="gone.wav: listed in manifest .* but missing"):
        prepare(tmp_path, manifest=str(tmp_path / "list.csv"))
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    data = prepare(tmp_path, manifest=str(tmp_path / "list.csv"), split="speaker", holdout_speaker="bob")
    assert data.class_names == ["one", "three", "two"] and len(data.test[1]) == 3 and len(data.train[1]) == 3
    (tmp_path / "nolabel.csv").write_text("path,speaker\naudio/one-ann.wav,ann\n")
    with pytest.raises(ValueError, match="missing column label"):
        prepare(tmp_path, manifest=str(tmp_path / "nolabel.csv"))


def test_any_sample_rate_is_resampled_and_keyed_in_the_cache(tmp_path):
    low = tone(tmp_path / "a8k.wav", 500.0, rate=8000)
    high = tone(tmp_path / "a16k.wav", 500.0, rate=16000)
    config = FeatureConfig(normalize=False)
    with pytest.warns(UserWarning, match="resampled from 16000 Hz to 8000 Hz"):
        features = extract_features([low, high], config, cache_dir=tmp_path / "cache", workers=1, progress=False)
    a, b = features.features
    assert a.shape == b.shape == config.shape
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98, "the same tone at either rate gives the same MFCC"
    again = extract_features([low, high], config, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert again.from_cache and np.array_equal(again.features, features.features)
    other = FeatureConfig(normalize=False, sample_rate=16000)
    assert cache_key([low, high], other) != cache_key([low, high], config)
    at_16k = extract_features([low, high], other, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert not at_16k.from_cache and not np.array_equal(at_16k.features, features.features)


@pytest.mark.parametrize("fit", ["center", "end"])
def test_any_length_is_padded_or_cropped_to_the_configured_frames(tmp_path, fit):
    config = FeatureConfig(normalize=False, top_db=None, fit=fit, num_frames=20)
    files = [tone(tmp_path / f"{seconds}.wav", 400.0, seconds=seconds) for seconds in (0.05, 0.32, 3.0)]
    features = extract_features(files, config, workers=1, progress=False).features
    assert features.shape == (3, *config.shape)
    short = features[0]  # 0.05 s = 400 samples: 4 hops of 128, padded with silence to 20 frames
    silent = np.all(short == short[:, :1], axis=0) if fit == "center" else np.all(short == 0, axis=0)
    if fit == "end":
        assert silent[-10:].all() and not silent[:3].all(), "'end' pads the frames at the end"
    else:
        assert silent[0] and silent[-1] and not silent[10], "'center' pads the waveform on both sides"
    with pytest.raises(ValueError, match="FeatureConfig.fit must be 'center' or 'end', got 'middle'"):
        FeatureConfig(fit="middle")


def test_other_splits_of_the_same_files_share_one_cache_entry(tmp_path):
    for speaker in ("ann", "bob"):
        for label, frequency in PITCH.items():
            tone(tmp_path / "data" / speaker / f"{label}_0.wav", frequency)
    for holdout in ("ann", "bob"):  # as two folds of a cross-validation
        prepare(tmp_path, data_dir=str(tmp_path / "data"), label_pattern=r"(?P<label>[a-z]+)_\d\.wav",
                split="speaker", holdout_speaker=holdout)
    assert len(list((tmp_path / "cache").glob("mfcc-*.npz"))) == 1
