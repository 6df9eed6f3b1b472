"""Event-level augmentation of SHD/SSC in the training loop (scnn.data.heidelberg.event_batches, train.event_*):
on the SHD fixtures, the rows are the training samples, counts are kept where they should be, the same seed
gives the same batches, epochs differ, validation and test are untouched, and a resume continues it."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scnn.data.fixtures import write_heidelberg_files
from scnn.data.heidelberg import event_batches
from scnn.data.prepare import DataConfig, prepare_data
from scnn.io import load_checkpoint
from scnn.train import TrainConfig, train

SPIKES = 150


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    root = tmp_path_factory.mktemp("shd")
    write_heidelberg_files(root, "shd", {"train": 30, "test": 8}, num_classes=3, spikes=SPIKES)
    config = DataConfig(data_dir=str(root), dataset="shd", feature_preset="events",
                        cache_dir=str(tmp_path_factory.mktemp("cache")))
    return config, prepare_data(config, progress=False)


def options(channel=0.0, time=0.0, drop=0.0):
    return SimpleNamespace(event_channel_jitter=channel, event_time_jitter=time, event_drop=drop)


def test_without_perturbation_the_batches_are_the_training_rows(shd):
    _, data = shd
    index = torch.tensor([5, 0, 26, 13])
    batch = event_batches(data, options())(index, torch.Generator().manual_seed(0))
    assert batch.shape == (4, 1, 140, 100)
    assert torch.equal(batch, data.train[0][index])  # each row binned from its own sample


def test_counts_are_kept_by_time_jitter_and_reduced_by_drop(shd):
    _, data = shd
    index = torch.arange(len(data.train[1]))
    plain = data.train[0][index].sum(dim=(1, 2, 3))
    assert torch.all(plain == SPIKES)  # the fixture's spikes all lie in the 1.4-s window
    jittered = event_batches(data, options(time=0.005))(index, torch.Generator().manual_seed(1))
    assert torch.equal(jittered.sum(dim=(1, 2, 3)), plain)  # moved in time, none lost
    assert not torch.equal(jittered, data.train[0][index])
    # Channel jitter moves spikes between rows; only those pushed past channel 0 or 699 are lost.
    shifted = event_batches(data, options(channel=3.0))(index, torch.Generator().manual_seed(1))
    assert torch.all(shifted.sum(dim=(1, 2, 3)) <= plain) and shifted.sum() >= 0.97 * plain.sum()
    frames_before, frames_after = data.train[0][index].sum(dim=(1, 2)), shifted.sum(dim=(1, 2))
    assert torch.all(frames_after <= frames_before)  # each spike keeps its time frame
    assert not torch.equal(shifted, data.train[0][index])
    dropped = event_batches(data, options(drop=0.25))(index, torch.Generator().manual_seed(1))
    share = float(dropped.sum() / plain.sum())
    assert 0.70 < share < 0.80  # 27 x 150 spikes at p = 0.25: binomial std 0.007
    with pytest.raises(ValueError, match="drop"):
        event_batches(data, options(drop=1.0))(index, torch.Generator())


def test_same_seed_same_batches_and_each_epoch_its_own(shd):
    _, data = shd
    index = torch.arange(8)
    make = event_batches(data, options(channel=2.0, time=0.01, drop=0.1))
    first, second = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    epoch1 = make(index, first)
    assert torch.equal(epoch1, make(index, second))
    assert not torch.equal(make(index, first), epoch1)  # the generator moved on: the next epoch differs
    assert not torch.equal(make(index, torch.Generator().manual_seed(8)), epoch1)


def test_switched_on_by_the_config_checked_and_only_for_events(shd, tmp_path):
    with pytest.raises(ValueError, match="train.event_drop"):
        TrainConfig(event_drop=1.0)
    with pytest.raises(ValueError, match="train.event_time_jitter"):
        TrainConfig(event_time_jitter=-0.1)
    with pytest.raises(ValueError, match="exclude each other"):
        TrainConfig(event_drop=0.1, gain_db=3.0)
    _, data = shd
    mfcc = SimpleNamespace(**{**vars(data), "feature_config": DataConfig().features()})
    with pytest.raises(ValueError, match="need an events dataset"):
        event_batches(mfcc, options(drop=0.1))


def _run(shd, folder, epochs, **changes):
    data_config, data = shd
    config = TrainConfig(model="4C3-P4-16FC-3FC", model_overrides={"num_steps": 2}, epochs=epochs, batch_size=8,
                         threads=1, seed=5, schedule="constant", **changes)
    return train(config, data_config, folder, progress=False, data=data, **({"resume": True, "extend_epochs": True}
                                                                           if (folder / "last.pt").exists() else {}))


def test_training_uses_it_for_training_batches_only_and_resumes_it(shd, tmp_path):
    _, data = shd
    val_before, test_before = data.val[0].clone(), data.test[0].clone()
    augment = {"event_channel_jitter": 2.0, "event_time_jitter": 0.01, "event_drop": 0.1}
    plain = _run(shd, tmp_path / "plain", 1)
    whole = _run(shd, tmp_path / "whole", 2, **augment)
    _run(shd, tmp_path / "resumed", 1, **augment)
    one_epoch = load_checkpoint(tmp_path / "resumed" / "last.pt")["model_state"]
    resumed = _run(shd, tmp_path / "resumed", 2, **augment)
    weights = {name: load_checkpoint(tmp_path / name / "last.pt")["model_state"]
               for name in ("plain", "whole", "resumed")}
    # An augmented epoch differs from a plain one (same seed, same order); stopped and resumed, augmented
    # training is the uninterrupted run.
    assert any(not torch.equal(weights["plain"][k], one_epoch[k]) for k in one_epoch)
    for key, value in weights["whole"].items():
        assert torch.equal(value, weights["resumed"][key]), key
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    # Validation and test rows are never augmented (the prepared tensors the evaluation reads are intact).
    assert torch.equal(data.val[0], val_before) and torch.equal(data.test[0], test_before)
    assert whole["config"]["train_config"]["event_drop"] == 0.1 and plain["epochs_run"] == 1
