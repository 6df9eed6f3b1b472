"""Features: shapes, presets, cache keys, bad input, normalisation."""

import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from scnn.features import (AudioFileError, FeatureConfig, Normalizer, extract_features, feature_config,
                           file_to_mfcc, load_audio, normalize_level, waveform_to_mfcc)


def tone(path, seconds=0.5, rate=8000, frequency=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * frequency * t)
    if channels > 1:
        signal = np.stack([signal] * channels, axis=1)
    soundfile.write(str(path), signal, rate)
    return path


@pytest.fixture
def wavs(tmp_path):
    return [tone(tmp_path / f"{d}_anna_{i}.wav", 0.3 + 0.1 * i, frequency=200 + 100 * d)
            for d in range(3) for i in range(3)]


def test_default_and_paper_shapes(wavs):
    for preset in ("default", "paper"):
        config = feature_config(preset)
        matrix = file_to_mfcc(wavs[0], config)
        assert matrix.shape == (32, 32) and matrix.dtype == np.float32
    paper = file_to_mfcc(wavs[0], feature_config("paper"))
    assert np.all(paper[16:] == 0), "paper preset: 16 MFCCs zero-padded to 32 rows"
    assert np.all(paper[:, 10:] == 0), "0.3 s at hop 512 gives 5 frames, the rest zero padding"


def test_fixed_frames_centre_crop_and_pad(tmp_path):
    config = FeatureConfig(top_db=None, num_frames=16, hop_length=128, n_fft=256, n_mels=40, n_mfcc=13)
    short = file_to_mfcc(tone(tmp_path / "short.wav", 0.05), config)
    long = file_to_mfcc(tone(tmp_path / "long.wav", 3.0), config)
    assert short.shape == long.shape == (13, 16)


def test_cache_hit_and_invalidation(wavs, tmp_path):
    cache = tmp_path / "cache"
    config = feature_config("default")
    first = extract_features(wavs, config, cache_dir=cache, workers=1, progress=False)
    assert not first.from_cache and first.features.shape == (9, 32, 32)
    start = time.perf_counter()
    second = extract_features(wavs, config, cache_dir=cache, workers=1, progress=False)
    assert second.from_cache and time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(first.features, second.features)
    assert not extract_features(wavs, feature_config("default", n_mfcc=20), cache_dir=cache, workers=1,
                                progress=False).from_cache
    tone(wavs[0], 0.9)  # the file changes: size and mtime
    os.utime(wavs[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    third = extract_features(wavs, config, cache_dir=cache, workers=1, progress=False)
    assert not third.from_cache and not np.array_equal(third.features[0], first.features[0])
    assert not list(cache.glob("*.tmp*")), "no temporary files left behind"


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"this is not audio at all" * 10, "cannot read"),
                                             (None, "cannot read")])
def test_bad_files_name_the_file(tmp_path, content, reason):
    path = tmp_path / "0_anna_0.wav"
    if content is None:  # truncated: a valid header cut short
        tone(path, 0.5)
        path.write_bytes(path.read_bytes()[:30])
    else:
        path.write_bytes(content)
    with pytest.raises(AudioFileError, match=reason) as error:
        file_to_mfcc(path, feature_config())
    assert str(path) in str(error.value)


def test_skip_bad_reports_and_strict_mode_stops(wavs, tmp_path):
    bad = tmp_path / "9_anna_0.wav"
    bad.write_bytes(b"")
    with pytest.raises(AudioFileError, match="9_anna_0.wav"):
        extract_features(wavs + [bad], feature_config(), workers=1, progress=False)
    result = extract_features(wavs + [bad], feature_config(), workers=1, progress=False, skip_bad=True)
    assert len(result.paths) == len(wavs) and [p for p, _ in result.skipped] == [str(bad)]


def test_stereo_and_other_rates_warn(tmp_path):
    with pytest.warns(UserWarning, match="mono"):
        audio = load_audio(tone(tmp_path / "stereo.wav", channels=2), 8000)
    assert audio.ndim == 1
    with pytest.warns(UserWarning, match="resampled from 16000"):
        audio = load_audio(tone(tmp_path / "fast.wav", 0.5, rate=16000), 8000)
    assert abs(audio.size - 4000) <= 1


def test_parallel_extraction_equals_serial(tmp_path):
    paths = [tone(tmp_path / f"{i % 10}_bob_{i}.wav", 0.2 + 0.01 * i, frequency=150 + 20 * i) for i in range(60)]
    config = feature_config()
    serial = extract_features(paths, config, workers=1, progress=False)
    parallel = extract_features(paths, config, workers=2, progress=False)
    np.testing.assert_array_equal(serial.features, parallel.features)


def test_normalizer_fits_train_only_and_round_trips():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, size=(100, 4, 8)).astype(np.float32)
    train[:, 3] = 0.0  # a zero-padded row
    normalizer = Normalizer.fit(train)
    normalized = normalizer(train)
    np.testing.assert_allclose(normalized[:, :3].mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(normalized[:, :3].std(axis=(0, 2)), 1, atol=1e-4)
    assert np.all(normalized[:, 3] == 0)
    clone = Normalizer.from_state_dict(normalizer.state_dict())
    np.testing.assert_array_equal(clone(train), normalized)
    assert np.array_equal(Normalizer.fit(train, enabled=False)(train), train)


def test_config_validation():
    with pytest.raises(ValueError, match="fit"):
        FeatureConfig(fit="middle")
    with pytest.raises(ValueError, match="n_mfcc"):
        FeatureConfig(n_mfcc=80, n_mels=40)
    with pytest.raises(ValueError, match="unknown feature preset"):
        feature_config("fancy")
    with pytest.raises(ValueError, match="level"):
        FeatureConfig(level="loud")
    for bad in (0.0, -10.0):
        with pytest.raises(ValueError, match=r"dynamic_range_db must be > 0 \(dB\)"):
            FeatureConfig(dynamic_range_db=bad)
    with pytest.raises(ValueError, match="dynamic_range_db applies to representation 'mfcc' or 'logmel'"):
        feature_config("causal", dynamic_range_db=40.0)


def test_dynamic_range_floors_the_log_mel_below_the_peak():
    """The default (80 dB) is librosa.feature.mfcc exactly; a 40 dB range floors every log-mel value at the
    recording's peak - 40 dB, and the MFCC is the orthonormal DCT-II of that floored log-mel."""
    import librosa
    from scipy.fft import dct

    rng = np.random.default_rng(0)
    # a loud 440 Hz tone over quiet noise: its quiet bins lie 40-80 dB below the peak
    time = np.arange(4000) / 8000
    waveform = (np.sin(2 * np.pi * 440 * time) + 1e-3 * rng.standard_normal(4000)).astype(np.float32)
    default = feature_config(top_db=None)
    fitted = waveform[(4000 - 31 * 128) // 2:][: 31 * 128]
    expected = librosa.feature.mfcc(y=fitted, sr=8000, n_mfcc=32, n_fft=256, hop_length=128, n_mels=64)
    np.testing.assert_array_equal(waveform_to_mfcc(waveform, default), expected.astype(np.float32))

    narrow_logmel = waveform_to_mfcc(waveform, replace(default, representation="logmel", dynamic_range_db=40.0))
    wide_logmel = waveform_to_mfcc(waveform, replace(default, representation="logmel"))
    peak = wide_logmel.max()
    assert narrow_logmel.min() == pytest.approx(peak - 40.0, abs=1e-3)
    assert (wide_logmel < peak - 41.0).mean() > 0.2  # the floor does clip something here
    np.testing.assert_allclose(narrow_logmel, np.maximum(wide_logmel, peak - 40.0), atol=1e-3)
    narrow_mfcc = waveform_to_mfcc(waveform, replace(default, dynamic_range_db=40.0))
    np.testing.assert_allclose(narrow_mfcc, dct(narrow_logmel, type=2, norm="ortho", axis=0)[:32], atol=1e-3)


def test_level_normalisation_removes_the_recordings_gain():
    rng = np.random.default_rng(0)
    waveform = (0.05 * rng.standard_normal(4000)).astype(np.float32)
    config = feature_config("waveform", num_frames=4000, top_db=None, level="rms")
    quiet, loud = waveform_to_mfcc(waveform, config), waveform_to_mfcc(7.0 * waveform, config)
    np.testing.assert_allclose(quiet, loud, rtol=1e-5)
    assert np.sqrt(np.mean(quiet.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)
    peak = normalize_level(waveform, "peak")
    assert np.abs(peak).max() == pytest.approx(1.0) and np.array_equal(normalize_level(waveform, "none"), waveform)
    assert np.array_equal(normalize_level(np.zeros(10, np.float32), "rms"), np.zeros(10))  # silence stays silent


def test_cache_hit_returns_the_callers_path_spelling(wavs, tmp_path, monkeypatch):
    """Relative and absolute spellings of the same files share a cache entry; each call gets its own back."""
    cache = tmp_path / "cache"
    absolute = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False, skip_bad=True)
    monkeypatch.chdir(tmp_path)
    relative_paths = [os.path.relpath(p, tmp_path) for p in wavs]
    relative = extract_features(relative_paths, feature_config(), cache_dir=cache, workers=1, progress=False,
                                skip_bad=True)
    assert relative.from_cache and relative.paths == relative_paths
    np.testing.assert_array_equal(relative.features, absolute.features)


# --------------------------------------------------------------------------- the cache: keyed by content, rebuilt when damaged


def cache_files(cache):
    return sorted(cache.glob("mfcc-*.npz"))


def test_changed_content_with_the_same_size_and_mtime_is_not_served_from_the_cache(wavs, tmp_path):
    cache = tmp_path / "cache"
    first = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
    before = os.stat(wavs[4])
    tone(wavs[4], 0.3 + 0.1 * 1, frequency=900)  # same duration, so the same size; other content
    os.utime(wavs[4], ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(wavs[4])
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
    fresh = extract_features(wavs, feature_config(), workers=1, progress=False)
    assert not second.from_cache
    np.testing.assert_array_equal(second.features, fresh.features)
    assert not np.array_equal(second.features[4], first.features[4])
    np.testing.assert_array_equal(np.delete(second.features, 4, 0), np.delete(first.features, 4, 0))
    assert second.digests[str(wavs[4])] != first.digests[str(wavs[4])]


def corrupt(path, kind):
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "emptied":
        path.write_bytes(b"")
    elif kind == "flipped":  # bytes in the middle of the feature array: the zip's CRC-32 catches them
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 8]) + data[middle + 8:])
    elif kind == "not a zip":
        path.write_text("hello")
    elif kind == "other arrays":
        np.savez(path.with_suffix(".tmp.npz"), features=np.zeros((2, 3), np.float32))
        path.with_suffix(".tmp.npz").replace(path)
    elif kind == "wrong shape":
        with np.load(path) as stored:
            arrays = dict(stored)
        arrays["features"] = arrays["features"][:, :5]
        np.savez(path.with_suffix(".tmp.npz"), **arrays)
        path.with_suffix(".tmp.npz").replace(path)


@pytest.mark.parametrize("kind", ["truncated", "emptied", "flipped", "not a zip", "other arrays", "wrong shape"])
def test_a_damaged_cache_is_rebuilt_with_a_warning_naming_it(wavs, tmp_path, kind):
    cache = tmp_path / "cache"
    first = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
    [cache_file] = cache_files(cache)
    corrupt(cache_file, kind)
    with pytest.warns(UserWarning, match=f"feature cache {cache_file} is unusable .*rebuilding it"):
        rebuilt = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
    assert not rebuilt.from_cache and rebuilt.paths == first.paths
    np.testing.assert_array_equal(rebuilt.features, first.features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
    assert again.from_cache, "the rebuilt cache is written back and serves the next call"
    assert cache_files(cache) == [cache_file] and not list(cache.glob(".*tmp"))


def test_random_byte_flips_never_give_wrong_features_or_a_traceback(wavs, tmp_path):
    """Whatever byte is damaged, the cache either still holds the right features or is rebuilt with a warning."""
    cache = tmp_path / "cache"
    reference = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
    [cache_file] = cache_files(cache)
    pristine = cache_file.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"rebuilt": 0, "served": 0}
    for position in rng.choice(len(pristine), size=40, replace=False):
        damaged = bytearray(pristine)
        damaged[position] ^= 1 << int(rng.integers(8))
        cache_file.write_bytes(bytes(damaged))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
        np.testing.assert_array_equal(result.features, reference.features)
        assert result.paths == reference.paths and result.skipped == reference.skipped
        if result.from_cache:
            outcomes["served"] += 1  # a byte that carries no data (a timestamp in a zip header)
        else:
            assert any(str(cache_file) in str(w.message) for w in caught), position
            outcomes["rebuilt"] += 1
    assert outcomes["rebuilt"] >= 30, outcomes


def test_a_failed_cache_write_leaves_no_temporary_file(wavs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / ".mfcc-0123.npz.abc.tmp"  # left behind by a killed process two hours ago
    old.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    recent = cache / ".mfcc-4567.npz.def.tmp"  # perhaps another process writing right now: kept
    recent.write_bytes(b"partial")
    real_savez = np.savez

    def failing_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half a cache")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.warns(UserWarning, match="cannot write the feature cache .*No space left"):
        result = extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False)
    assert result.features.shape == (9, 32, 32) and not result.from_cache
    assert sorted(p.name for p in cache.iterdir()) == [recent.name], "no cache, no new temporary, the stale one gone"
    monkeypatch.setattr(np, "savez", real_savez)
    assert not extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False).from_cache
    assert extract_features(wavs, feature_config(), cache_dir=cache, workers=1, progress=False).from_cache


def test_every_bad_file_named_at_once_and_remembered_by_the_cache(wavs, tmp_path):
    bad = {"9_anna_0.wav": "empty file", "9_anna_1.wav": "no audio samples", "9_anna_2.wav": "Format not recognised",
           "9_anna_3.wav": "NaN", "9_anna_4.wav": "empty file", "9_anna_5.wav": "empty file", "9_anna_6.wav": "empty file"}
    paths = list(wavs)
    for name in bad:
        paths.append(tmp_path / name)
        (tmp_path / name).write_bytes(b"")
    soundfile.write(str(tmp_path / "9_anna_1.wav"), np.zeros(0), 8000)
    (tmp_path / "9_anna_2.wav").write_text("not audio\n")
    soundfile.write(str(tmp_path / "9_anna_3.wav"), np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    cache = tmp_path / "cache"
    with pytest.raises(AudioFileError) as caught:
        extract_features(paths, feature_config(), cache_dir=cache, workers=1, progress=False)
    message = str(caught.value)
    assert message.startswith("cannot use 7 files: ") and "... and 2 more" in message and "--skip-bad" in message
    for name in list(bad)[:5]:
        assert name in message
    assert [(Path(path).name, reason) for path, reason in caught.value.problems] == [
        (name, caught.value.problems[index][1]) for index, name in enumerate(bad)]
    for (path, reason), expected in zip(caught.value.problems, bad.values()):
        assert expected in reason and str(path) not in reason, (path, reason)
    skipped = extract_features(paths, feature_config(), cache_dir=cache, workers=1, progress=False, skip_bad=True)
    assert skipped.from_cache, "the strict run's extraction is reused"
    assert skipped.skipped == caught.value.problems and skipped.paths == [str(p) for p in wavs]
    with pytest.raises(AudioFileError, match="cannot use 7 files"):
        extract_features(paths, feature_config(), cache_dir=cache, workers=1, progress=False)
