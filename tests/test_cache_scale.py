"""The sharded, memory-mapped feature cache (scnn.features.cache): the features of the single-file cache,
content keys per shard, damaged shards rebuilt and named, interrupted builds resumed, bad files named."""

import os
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from scnn.data.fixtures import write_tone
from scnn.features import cache as sharded
from scnn.features.cache import ShardedFeatures, cached_features, shard_folder, sharded_features
from scnn.features.mfcc import AudioFileError, extract_features, feature_config

CONFIG = feature_config("default", num_frames=8)


@pytest.fixture
def tones(tmp_path):
    """22 short tone files (shards of 8: 8, 8, 6)."""
    return [str(write_tone(tmp_path / "wav" / f"{i:02d}.wav", 200 + 40 * i, seed=i, seconds=0.12)) for i in range(22)]


def _shard_files(cache):
    return sorted(p.name for p in shard_folder(cache, CONFIG).glob("*.npy") if not p.name.startswith("split-"))


def _count_extractions(monkeypatch):
    calls = []
    real = sharded._file_to_mfcc_or_error

    def counting(job):
        calls.append(job[0])
        return real(job)

    monkeypatch.setattr(sharded, "_file_to_mfcc_or_error", counting)
    return calls


def test_shards_hold_the_single_file_cache_features_and_map_them(tones, tmp_path, monkeypatch):
    reference = extract_features(tones, CONFIG, workers=1, progress=False).features
    calls = _count_extractions(monkeypatch)
    built = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    assert not built.from_cache and len(calls) == 22 and len(_shard_files(tmp_path / "cache")) == 3
    again = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    assert again.from_cache and len(calls) == 22  # nothing extracted twice
    assert isinstance(again.features, ShardedFeatures) and again.features.shape == (22, *CONFIG.shape)
    assert all(isinstance(shard, np.memmap) for shard in again.features.shards)  # read on demand
    assert again.paths == tones and again.digests[tones[0]] is not None
    np.testing.assert_array_equal(np.asarray(again.features), reference)
    # Indexing as an array: int, negative, slice, list across shards in any order, boolean mask.
    features = again.features
    np.testing.assert_array_equal(features[3], reference[3])
    np.testing.assert_array_equal(features[-1], reference[-1])
    np.testing.assert_array_equal(features[5:19:3], reference[5:19:3])
    np.testing.assert_array_equal(features[[21, 0, 9, 8, 7, 16]], reference[[21, 0, 9, 8, 7, 16]])
    mask = np.arange(22) % 3 == 0
    np.testing.assert_array_equal(features[mask], reference[mask])
    with pytest.raises(IndexError):
        features[[22]]


def test_a_changed_recording_rebuilds_its_shard_only(tones, tmp_path, monkeypatch):
    sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    before = set(_shard_files(tmp_path / "cache"))
    # New content, same size and modification time: only a content key notices.
    stat = os.stat(tones[10])
    write_tone(Path(tones[10]), 3000.0, seed=99, seconds=0.12)
    os.utime(tones[10], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(tones[10]).st_size == stat.st_size
    calls = _count_extractions(monkeypatch)
    result = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    assert sorted(calls) == sorted(tones[8:16])  # the second shard's files, and no other
    assert len(set(_shard_files(tmp_path / "cache")) - before) == 1
    fresh = extract_features([tones[10]], CONFIG, workers=1, progress=False).features[0]
    np.testing.assert_array_equal(result.features[10], fresh)


def test_a_damaged_shard_is_named_and_rebuilt(tones, tmp_path):
    first = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    expected = np.asarray(first.features)
    del first  # let go of the mapped files before damaging one
    victim = sorted(shard_folder(tmp_path / "cache", CONFIG).glob("*.npy"))[1]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated
    with pytest.warns(UserWarning, match=f"shard {victim}.*rebuilding"):
        again = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    np.testing.assert_array_equal(np.asarray(again.features), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt for good: a third call warns no more
        sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)


def test_an_interrupted_build_keeps_its_shards_and_resumes(tones, tmp_path, monkeypatch):
    real_write = sharded._write_shard
    written = []

    def write_then_die(*args):
        if len(written) == 2:
            raise KeyboardInterrupt  # killed while extracting the third shard
        real_write(*args)
        written.append(args[1])

    monkeypatch.setattr(sharded, "_write_shard", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    folder = shard_folder(tmp_path / "cache", CONFIG)
    assert len(list(folder.glob("*.json"))) == 2 and not list(folder.glob(".*.tmp"))
    monkeypatch.setattr(sharded, "_write_shard", real_write)
    calls = _count_extractions(monkeypatch)
    resumed = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    assert sorted(calls) == sorted(tones[16:])  # only the shard that was not finished
    reference = extract_features(tones, CONFIG, workers=1, progress=False).features
    np.testing.assert_array_equal(np.asarray(resumed.features), reference)


def test_bad_files_are_named_together_and_remembered(tones, tmp_path, monkeypatch):
    empty = tmp_path / "wav" / "03.wav"
    empty.write_bytes(b"")
    text = tmp_path / "wav" / "12.wav"
    text.write_text("not audio")
    with pytest.raises(AudioFileError) as error:
        sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    assert str(empty) in str(error.value) and str(text) in str(error.value)
    assert {path for path, _ in error.value.problems} == {str(empty), str(text)}
    calls = _count_extractions(monkeypatch)
    kept = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8,
                            skip_bad=True)
    assert calls == []  # the strict call's shards, bad files included, serve the skip_bad one
    assert len(kept.paths) == 20 and str(empty) not in kept.paths and kept.features.shape[0] == 20
    assert [path for path, _ in kept.skipped] == [str(empty), str(text)]


def test_short_lists_keep_the_single_file_cache_and_prepare_data_uses_shards(tmp_path, monkeypatch):
    from scnn.data import prepare
    from scnn.data.prepare import DataConfig, prepare_data

    files = []
    for label, frequency in enumerate((300.0, 1200.0)):
        for take in range(9):
            files.append(write_tone(tmp_path / "tones" / str(label) / f"{take}.wav", frequency + 10 * take, seed=take,
                                    seconds=0.2))
    small = cached_features([str(f) for f in files[:4]], CONFIG, tmp_path / "single", workers=1, progress=False,
                            shard_size=8)
    assert not isinstance(small.features, ShardedFeatures) and list((tmp_path / "single").glob("mfcc-*.npz"))
    config = dict(data_dir=str(tmp_path / "tones"), dataset="folders", split="random", test_fraction=0.25,
                  feature_preset="default", feature_overrides={"num_frames": 8})
    whole = prepare_data(DataConfig(**config, cache_dir=str(tmp_path / "whole")), progress=False)
    monkeypatch.setattr(prepare, "cached_features", partial(cached_features, shard_size=5, workers=1))
    in_shards = prepare_data(DataConfig(**config, cache_dir=str(tmp_path / "shards")), progress=False)
    assert len(list(shard_folder(tmp_path / "shards", DataConfig(**config).features()).glob("*.json"))) == 4
    for part in ("train", "val", "test"):
        for mine, theirs in zip(getattr(in_shards, part), getattr(whole, part)):
            assert mine.equal(theirs)
    assert in_shards.test_set == whole.test_set
    # Each split is a tensor mapped from a file beside the shards (not a copy in memory), reused next time.
    splits = sorted(shard_folder(tmp_path / "shards", DataConfig(**config).features()).glob("split-*.npy"))
    assert len(splits) == 3
    maps = Path("/proc/self/maps").read_text()
    assert all(str(path) in maps for path in splits)
    stamps = [path.stat().st_mtime_ns for path in splits]
    again = prepare_data(DataConfig(**config, cache_dir=str(tmp_path / "shards")), progress=False)
    assert [path.stat().st_mtime_ns for path in splits] == stamps and again.train[0].equal(whole.train[0])
    again.train[0][0] += 1.0  # copy-on-write: the file keeps its values
    assert prepare_data(DataConfig(**config, cache_dir=str(tmp_path / "shards")), progress=False).train[0].equal(
        whole.train[0])
    del again
    for path in splits:
        path.write_bytes(path.read_bytes()[:100])  # damaged: named and rebuilt
    with pytest.warns(UserWarning, match=f"split file {splits[0]} is unusable"):
        rebuilt = prepare_data(DataConfig(**config, cache_dir=str(tmp_path / "shards")), progress=False)
    assert rebuilt.train[0].equal(whole.train[0]) and rebuilt.test[0].equal(whole.test[0])


# --------------------------------------------------------------------------- data checksums (issue 21)


def _flip_bytes(path: Path, count: int = 64) -> None:
    """Invert ``count`` bytes in the middle of a file's data, keeping its size and modification time."""
    from scnn import faults

    data = bytearray(path.read_bytes())
    middle = len(data) - (len(data) - 128) // 2  # past the 128-byte .npy header
    for offset in range(middle, middle + count):
        data[offset] ^= 0xFF
    faults.replace_keeping_stat(path, bytes(data))


def test_flipped_bytes_in_a_shard_are_named_and_rebuilt(tones, tmp_path, monkeypatch):
    """Same size, same shape, same index: only the checksum in the index notices the changed values."""
    import json

    first = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    assert all(len(shard) for shard in first.features.shards)
    del first
    folder = shard_folder(tmp_path / "cache", CONFIG)
    victim = folder / _shard_files(tmp_path / "cache")[1]
    _flip_bytes(victim)
    calls = _count_extractions(monkeypatch)
    with pytest.warns(UserWarning, match=rf"shard {victim} is unusable .*SHA-256.*rebuilding it"):
        again = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    shard_paths = json.loads(victim.with_suffix(".json").read_text())["paths"]
    assert not again.from_cache and sorted(calls) == sorted(shard_paths)  # that shard's files, and no other
    fresh = extract_features(tones, CONFIG, workers=1, progress=False).features
    np.testing.assert_array_equal(np.asarray(again.features), fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt for good
        assert sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8).from_cache


def test_a_shard_index_without_a_checksum_is_rebuilt(tones, tmp_path):
    """A shard written before the checksums existed cannot be trusted: rebuilt once, with the warning."""
    import json

    sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    folder = shard_folder(tmp_path / "cache", CONFIG)
    index_file = sorted(folder.glob("*.json"))[0]
    index = json.loads(index_file.read_text())
    del index["sha256"]
    index_file.write_text(json.dumps(index))
    with pytest.warns(UserWarning, match=rf"shard {index_file.with_suffix('.npy')} is unusable .*no SHA-256"):
        again = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8)
    assert not again.from_cache and "sha256" in json.loads(index_file.read_text())


class _Scale:
    """A normaliser for mapped_rows: features times two."""

    def __call__(self, values):
        return np.asarray(values) * 2.0

    def state_dict(self):
        return {"scale": 2.0}


def test_flipped_bytes_in_a_split_file_are_named_and_rebuilt(tones, tmp_path):
    import torch

    features = sharded_features(tones, CONFIG, tmp_path / "cache", workers=1, progress=False, shard_size=8).features
    rows = [20, 3, 11, 4, 17, 0]
    expected = torch.from_numpy(features[rows] * 2.0).unsqueeze(1)
    assert sharded.mapped_rows(features, rows, _Scale(), chunk=4).equal(expected)
    (split,) = shard_folder(tmp_path / "cache", CONFIG).glob("split-*.npy")
    checksum = split.with_name(split.name + ".sha256")
    assert checksum.read_text().split() == [sharded.data_digest(np.load(split)), split.name]
    _flip_bytes(split)
    with pytest.warns(UserWarning, match=rf"split file {split} is unusable .*SHA-256"):
        assert sharded.mapped_rows(features, rows, _Scale(), chunk=4).equal(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt for good
        assert sharded.mapped_rows(features, rows, _Scale()).equal(expected)
    checksum.unlink()  # a split file without its checksum is unfinished: rebuilt without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sharded.mapped_rows(features, rows, _Scale()).equal(expected) and checksum.exists()
