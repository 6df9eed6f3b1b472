"""SHD and SSC on generated HDF5 files with the releases' keys and dtypes (the real files are not used here)."""

from collections import Counter

import h5py
import numpy as np
import pytest

from scnn.data import DataConfig, dataset_listing, prepare_data, split_recordings
from scnn.data.fixtures import random_events, write_event_file, write_heidelberg_files
from scnn.data.heidelberg import augment_events, bin_events, read_event_file


def test_fixture_has_the_release_keys_and_dtypes(tmp_path):
    files = write_heidelberg_files(tmp_path, "shd", {"train": 4, "test": 2})
    with h5py.File(files["train"]) as handle:
        assert h5py.check_vlen_dtype(handle["spikes/times"].dtype) == np.float16
        assert h5py.check_vlen_dtype(handle["spikes/units"].dtype) == np.uint16
        assert handle["labels"].dtype == np.uint16 and handle["extra/speaker"].dtype == np.uint16
        assert handle["spikes/times"].shape == handle["labels"].shape == (4,)
        assert handle["extra/keys"][0] == b"class0"


def test_binning_conserves_spike_counts():
    generator = np.random.default_rng(0)
    times = generator.uniform(0.0, 1.4, 5000)
    units = generator.integers(0, 700, 5000)
    full = bin_events(times, units, time_step=0.014, num_steps=100)
    assert full.shape == (700, 100) and full.sum() == 5000  # 1.4 s window: every spike counted once
    pooled = bin_events(times, units, time_step=0.014, num_steps=100, num_rows=140)
    assert np.array_equal(pooled, full.reshape(140, 5, 100).sum(axis=1))
    short = bin_events(times, units, time_step=0.01, num_steps=50)  # 0.5 s window
    assert short.sum() == np.count_nonzero(times < 0.5)
    for row in (0, 350, 699):
        assert full[row].sum() == np.count_nonzero(units == row)
    edge = bin_events(np.array([0.0, 0.01, 0.0199, 0.02]), np.array([3, 3, 3, 3]), 0.01, 3)
    assert edge[3].tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match="num_rows must divide 700"):
        bin_events(times, units, 0.01, 10, num_rows=300)


def test_event_augmentation_is_seeded_and_does_what_it_says():
    times, units = random_events(np.random.default_rng(1), label=3, num_classes=20, spikes=4000)
    same = augment_events(times, units, np.random.default_rng(0))
    assert np.array_equal(same[0], times) and np.array_equal(same[1], units)
    first = augment_events(times, units, np.random.default_rng(5), channel_jitter=2, time_jitter=0.005, drop=0.2)
    again = augment_events(times, units, np.random.default_rng(5), channel_jitter=2, time_jitter=0.005, drop=0.2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    kept_t, kept_u = augment_events(times, units, np.random.default_rng(5), drop=0.25)
    assert 0.7 * 4000 < len(kept_t) < 0.8 * 4000 and set(kept_u) <= set(units)
    edge_t, edge_u = augment_events(np.zeros(1000), np.zeros(1000, int), np.random.default_rng(2), channel_jitter=3)
    assert edge_u.min() >= 0 and 300 < len(edge_u) < 700  # about half pushed below channel 0 and dropped
    shifted_t, _ = augment_events(times, units, np.random.default_rng(3), time_jitter=0.01)
    assert shifted_t.min() >= 0 and 0.005 < np.std(shifted_t - times) < 0.015
    with pytest.raises(ValueError, match="drop"):
        augment_events(times, units, np.random.default_rng(0), drop=1.0)


def test_bad_files_name_every_bad_sample(tmp_path):
    times = [np.array([0.1, 0.2]), np.array([0.1]), np.array([0.3])]
    units = [np.array([1, 2]), np.array([1, 2]), np.array([700])]
    path = write_event_file(tmp_path / "bad.h5", times, units, [0, 1, 2])
    with pytest.raises(ValueError, match=r"bad.h5: 2 samples: sample 1: 1 times but 2 units; "
                                         r"sample 2: channel 700 outside 0..699"):
        read_event_file(path)
    with h5py.File(tmp_path / "nolabels.h5", "w") as handle:
        handle.create_dataset("spikes/times", data=np.zeros(2))
    with pytest.raises(ValueError, match="nolabels.h5: lacks spikes/units, labels"):
        read_event_file(tmp_path / "nolabels.h5")
    with pytest.raises(FileNotFoundError, match=r"lacks shd_train.h5, shd_test.h5"):
        dataset_listing(DataConfig(dataset="shd", data_dir=str(tmp_path), feature_preset="events"))


def test_shd_listing_and_validation_carved_from_train(tmp_path):
    write_heidelberg_files(tmp_path, "shd", {"train": 60, "test": 20})
    listing = dataset_listing(DataConfig(dataset="shd", data_dir=str(tmp_path), feature_preset="events"))
    assert listing.class_names == [f"class{i}" for i in range(20)]
    assert Counter(r.official_part for r in listing.recordings) == {"train": 60, "test": 20}
    assert {r.speaker for r in listing.recordings} == {str(i) for i in range(10)}
    split = split_recordings(listing.recordings, "official", val_fraction=1 / 3, seed=0)
    # 3 training samples per class: round(1/3 * 3) = 1 per class to validation, all from the training file
    assert (len(split.train), len(split.val), len(split.test)) == (40, 20, 20)
    assert {r.path.name for r in split.val} == {"shd_train.h5"} and {r.path.name for r in split.test} == {"shd_test.h5"}
    assert len({r.key for r in split.train + split.val + split.test}) == 80
    held_out = split_recordings(listing.recordings, "speaker", holdout_speaker="3", val_fraction=0.0)
    assert {r.speaker for r in held_out.test} == {"3"} and "3" not in {r.speaker for r in held_out.train}


def test_ssc_uses_its_validation_file_and_prepares_counts(tmp_path):
    files = write_heidelberg_files(tmp_path, "ssc", {"train": 70, "val": 35, "test": 35})
    config = DataConfig(dataset="ssc", data_dir=str(tmp_path), feature_preset="events", val_fraction=0.5)
    data = prepare_data(config, progress=False)
    assert data.train[0].shape == (70, 1, 140, 100) and len(data.val[1]) == 35 and len(data.test[1]) == 35
    assert data.class_names[34] == "class34"
    events = read_event_file(files["test"])
    order = [int(name.rsplit("#", 1)[1]) for name in data.test_files]
    for row, index in enumerate(order[:5]):
        expected = bin_events(events.times[index], events.units[index], 0.014, 100, 140)
        assert np.array_equal(data.test[0][row, 0].numpy(), expected)  # the preset does not normalise
        assert data.test[1][row] == events.labels[index]
    assert data.test[0].sum() == sum(np.count_nonzero(t < 1.4) for t in events.times)
    assert len(set(data.test_set["sha256"])) == 35
    with pytest.raises(ValueError, match="use feature_preset 'events'"):
        prepare_data(DataConfig(dataset="ssc", data_dir=str(tmp_path)), progress=False)
