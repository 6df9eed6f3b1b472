"""The robust search space (`scnn tune --space robust`): utterance normalisation, VTLP, noise, speed and
mixup per trial; trials share one prepared data set, renormalised exactly as preparing it with the
trial's normalisation would; the objective is the validation accuracy of the run config's split (one
leave-one-speaker-out fold's own validation speaker here), never the test."""

import json
from dataclasses import replace

import numpy as np
import pytest

from scnn.data.prepare import DataConfig, prepare_data
from scnn.search.tune import data_config_from_trial, renormalized, train_config_from_trial, utterance_norm_of_trial
from scnn.train.config import TrainConfig


def speaker_fold(fsdd_dir, feature_cache, **values):
    return DataConfig(data_dir=str(fsdd_dir), cache_dir=str(feature_cache), download=False, split="speaker",
                      holdout_speaker="nicolas", val_speakers="theo", train_per_class=4, **values)


def test_renormalized_data_equal_data_prepared_with_the_trials_normalisation(fsdd_dir, feature_cache):
    base = prepare_data(speaker_fold(fsdd_dir, feature_cache), progress=False)
    for mode in ("mean", "mean_var"):
        direct = prepare_data(speaker_fold(fsdd_dir, feature_cache, utterance_norm=mode), progress=False)
        again = renormalized(base, mode)
        assert again.normalizer.utterance == mode
        for ours, theirs in zip((again.train, again.val, again.test), (direct.train, direct.val, direct.test)):
            assert np.allclose(ours[0].numpy(), theirs[0].numpy(), atol=2e-4) and ours[1].equal(theirs[1])
    assert renormalized(base, "none") is base
    with pytest.raises(ValueError, match="utterance_norm=none"):
        renormalized(direct, "mean")
    for utterance in ("none", "mean_var"):  # speaker-level CMN, alone and under per-utterance CMVN
        direct = prepare_data(speaker_fold(fsdd_dir, feature_cache, speaker_norm="mean", utterance_norm=utterance),
                              progress=False)
        again = renormalized(base, utterance, "mean")
        assert again.speaker_norm == direct.speaker_norm == ("mean", 0, 0)
        for ours, theirs in zip((again.train, again.val, again.test), (direct.train, direct.val, direct.test)):
            assert np.allclose(ours[0].numpy(), theirs[0].numpy(), atol=2e-4) and ours[1].equal(theirs[1])
    assert not np.allclose(renormalized(base, "none", "mean").test[0].numpy(), base.test[0].numpy(), atol=0.1)
    with pytest.raises(ValueError, match="speaker_norm=none"):
        renormalized(direct, "none", "none")


def test_trials_map_onto_the_configs():
    trial = {"utterance_norm": "mean", "vtlp": 0.1, "noise_prob": 0.5, "speed": 0.05, "mixup": 0.2}
    config = train_config_from_trial(trial, TrainConfig(noise_snr_min=-5, noise_snr_max=25))
    assert (config.vtlp, config.noise_prob, config.speed, config.mixup) == (0.1, 0.5, 0.05, 0.2)
    assert config.noise_snr_min == -5 and config.waveform_augmentation
    assert data_config_from_trial(trial, DataConfig()).utterance_norm == "mean"
    assert data_config_from_trial({"beta": 0.5}, DataConfig(utterance_norm="mean_var")).utterance_norm == "mean_var"
    assert [utterance_norm_of_trial({"utterance_norm": v}) for v in (0.2, 1.7, 2.99, 3.0)] == \
        ["none", "mean", "mean_var", "mean_var"]  # bayesopt's continuous index, floored
    assert data_config_from_trial({"speaker_norm": 1.4}, DataConfig()).speaker_norm == "mean"
    assert data_config_from_trial({"speaker_norm": "none"}, DataConfig(speaker_norm="mean")).speaker_norm == "none"


@pytest.mark.slow  # a Ray search: two trials of one epoch
def test_tiny_robust_search_on_a_speaker_fold(fsdd_dir, feature_cache, tmp_path):
    pytest.importorskip("ray")
    from scnn.cli import main

    summary = main(["tune", "--space", "robust", "--search", "random", "--num-samples", "2", "--epochs", "1",
                    "--train-per-class", "6", "--data-dir", str(fsdd_dir), "--cache-dir", str(feature_cache),
                    "--out", str(tmp_path), "--set", "data.split=speaker", "--set", "data.holdout_speaker=nicolas",
                    "--set", "data.val_speakers=theo"])
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert summary["finished_trials"] == 2
    for trial in trials:
        assert trial["utterance_norm"] in ("none", "mean", "mean_var") and trial["vtlp"] in (0.0, 0.05, 0.1, 0.15)
    chosen = summary["chosen_config"]
    assert set(chosen) == {"utterance_norm", "speaker_norm", "vtlp", "noise_prob", "speed", "mixup"}
    assert summary["retrained_config"]["vtlp"] == chosen["vtlp"]
