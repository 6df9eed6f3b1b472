"""Speaker normalisation and speaker augmentation: per-utterance CMN/CMVN (data.utterance_norm), VTLP
(train.vtlp), and training noise added before the silence trim, where the noise evaluation adds it.

What matters: CMN removes a per-utterance offset of the cepstra (a speaker's or a channel's), the
same way in numpy (prepared features) and torch (per-batch features); VTLP moves a formant by the
drawn factor and is the identity at 1; the training path computes the features the evaluation path
computes from the same noisy recording; all of it is seeded and never touches validation or test.
"""

import numpy as np
import pytest
import torch

from scnn.data.prepare import DataConfig, PreparedData
from scnn.features.mfcc import feature_config, waveform_to_mfcc
from scnn.features.noise import measure_snr
from scnn.features.normalize import Normalizer, utterance_normalize
from scnn.features.torch_mfcc import TorchMFCC, fitted_batch
from scnn.features.wave_augment import augment_recordings, draw_vtlp, vtlp_matrices, vtlp_warp
from scnn.io import load_checkpoint
from scnn.train.config import TrainConfig
from scnn.train.evaluate import evaluate, load_trained_model
from scnn.train.loop import train, waveform_batches


def features(count=5, rows=6, frames=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, rows, frames)).astype(np.float32)
    x[:, -1] = 0.0  # a zero-padded row (num_rows > n_mfcc)
    return x


# --------------------------------------------------------------------------- per-utterance normalisation

def test_cmn_removes_a_per_utterance_offset_and_cmvn_a_per_utterance_scale():
    x = features()
    rng = np.random.default_rng(1)
    offset = rng.normal(scale=5.0, size=(len(x), x.shape[1], 1)).astype(np.float32)
    offset[:, -1] = 0.0
    scale = rng.uniform(0.5, 3.0, size=(len(x), x.shape[1], 1)).astype(np.float32)
    plain_mean = Normalizer.fit(x, utterance="mean")
    assert np.allclose(Normalizer.fit(x + offset, utterance="mean")(x + offset), plain_mean(x), atol=1e-5)
    plain_mv = Normalizer.fit(x, utterance="mean_var")
    assert np.allclose(Normalizer.fit(x * scale + offset, utterance="mean_var")(x * scale + offset), plain_mv(x),
                       atol=1e-4)
    # without it the offset survives: the check above is not vacuous
    assert not np.allclose(Normalizer.fit(x + offset)(x + offset)[0], Normalizer.fit(x)(x)[0], atol=1e-2)
    cmvn = utterance_normalize(x, "mean_var")
    assert np.allclose(cmvn[:, :-1].mean(-1), 0, atol=1e-6) and np.allclose(cmvn[:, :-1].std(-1), 1, atol=1e-5)
    assert np.all(cmvn[:, -1] == 0)  # the zero row stays zero, no division by 0


def test_torch_and_numpy_normalise_alike_and_the_mode_is_saved():
    x = features()
    for mode in ("none", "mean", "mean_var"):
        normalizer = Normalizer.fit(x, utterance=mode)
        assert np.allclose(normalizer.torch(torch.from_numpy(x)).numpy(), normalizer(x), atol=1e-5), mode
        again = Normalizer.from_state_dict(normalizer.state_dict())
        assert again.utterance == mode and np.array_equal(again(x), normalizer(x))
    old_state = {k: v for k, v in Normalizer.fit(x).state_dict().items() if k != "utterance"}
    assert Normalizer.from_state_dict(old_state).utterance == "none"  # checkpoints from before the option


def test_bad_utterance_norm_is_named():
    with pytest.raises(ValueError, match="data.utterance_norm"):
        DataConfig(utterance_norm="cepstral")
    with pytest.raises(ValueError, match="mean_var"):
        utterance_normalize(features(), "zscore")


def test_prepared_data_uses_the_configured_utterance_norm(fsdd_dir, feature_cache):
    from scnn.data.prepare import prepare_data

    config = DataConfig(data_dir=str(fsdd_dir), cache_dir=str(feature_cache), train_per_class=2, download=False,
                        utterance_norm="mean")
    data = prepare_data(config, progress=False)
    assert data.normalizer.utterance == "mean"
    raw = data.train[0][:, 0].numpy() * data.normalizer.std[:, None] + data.normalizer.mean[:, None]
    assert np.allclose(raw.mean(-1), 0, atol=1e-4)  # every utterance's rows were centred before the standardising


# --------------------------------------------------------------------------- VTLP

def test_vtlp_is_the_identity_at_one_and_moves_a_formant_by_the_factor():
    maps = vtlp_matrices(torch.tensor([1.0, 1.1, 0.9]), n_fft=256)
    assert maps.shape == (3, 129, 129) and torch.allclose(maps[0], torch.eye(129))
    config = feature_config()
    t = torch.arange(4000) / config.sample_rate
    tone = torch.sin(2 * torch.pi * 1000.0 * t)  # 1000 Hz = bin 32 of 129 at 8 kHz, n_fft 256
    spectrum = torch.stft(tone, 256, 128, window=torch.hann_window(256), return_complex=True).abs().square()
    for row, alpha in ((1, 1.1), (2, 0.9)):
        peak = int((maps[row] @ spectrum).mean(1).argmax())
        assert abs(peak - 32 * alpha) <= 1, (alpha, peak)
    grid = np.linspace(0, 4000, 101)
    for alpha in (0.8, 0.9, 1.1, 1.2):
        warped = vtlp_warp(grid, alpha, 4000.0)
        assert warped[0] == 0 and abs(warped[-1] - 4000) < 1e-9 and np.all(np.diff(warped) > 0)


def test_vtlp_draws_are_seeded_and_in_range():
    first = draw_vtlp(64, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(first, draw_vtlp(64, 0.1, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, draw_vtlp(64, 0.1, torch.Generator().manual_seed(1)))
    assert first.min() >= 0.9 and first.max() <= 1.1 and first.std() > 0.03
    with pytest.raises(ValueError, match="train.vtlp"):
        TrainConfig(vtlp=0.7)
    assert TrainConfig(vtlp=0.1).waveform_augmentation


# --------------------------------------------------------------------------- noise before the trim

def word_in_silence(seed=0, before=2500, after=1500):
    """A 'word' (a chirp-like two-tone burst) with silence around it: [before + 3000 + after] float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(3000) / 8000
    word = (np.sin(2 * np.pi * (400 + 100 * seed) * t) + 0.5 * np.sin(2 * np.pi * 1300 * t)) * np.hanning(3000)
    audio = np.concatenate([np.zeros(before), word, np.zeros(after)]) + 1e-4 * rng.standard_normal(before + 3000 + after)
    return torch.from_numpy(audio.astype(np.float32))


def test_training_noise_is_added_to_the_recording_as_read_at_the_drawn_snr():
    recordings = [word_in_silence(seed) for seed in range(4)]
    noisy = augment_recordings(recordings, torch.Generator().manual_seed(0), noise_prob=1.0, snr_min=10,
                               snr_max=10, noise_colours=("white",))
    for clean, mixed in zip(recordings, noisy):
        assert mixed.shape == clean.shape  # the whole recording, not the trimmed window
        assert abs(measure_snr(clean.numpy(), mixed.numpy()) - 10.0) < 0.1  # SNR over the whole recording
        assert (mixed[:2000] - clean[:2000]).abs().mean() > 0.01  # noise in the leading silence, before any trim


def test_training_features_are_the_evaluation_features_of_the_same_noisy_recording():
    """The per-batch training path (noise on the recording as read -> trim -> torch MFCC -> normaliser) equals
    the evaluation path (:func:`waveform_to_mfcc` of the noisy recording, which trims it, then the normaliser)."""
    config = feature_config()
    recordings = [word_in_silence(seed) for seed in range(6)]
    clean = np.stack([waveform_to_mfcc(r.numpy(), config) for r in recordings])
    normalizer = Normalizer.fit(clean, utterance="mean_var")
    x = torch.from_numpy(normalizer(clean)).unsqueeze(1)
    labels = torch.arange(6) % 3
    data = PreparedData((x, labels), (x, labels), (x, labels), ["a", "b", "c"], normalizer, config, "words",
                        train_waveforms=recordings)
    options = dict(noise_prob=1.0, noise_snr_min=5, noise_snr_max=5, noise_colours="white")
    batch = waveform_batches(data, TrainConfig(**options))(torch.arange(6), torch.Generator().manual_seed(4))
    noisy = augment_recordings(recordings, torch.Generator().manual_seed(4), noise_prob=1.0, snr_min=5, snr_max=5,
                               noise_colours=("white",))
    expected = normalizer(np.stack([waveform_to_mfcc(r.numpy(), config) for r in noisy]))
    assert batch.shape == (6, 1, *config.shape)
    assert np.abs(batch[:, 0].numpy() - expected).max() < 0.01  # the torch/librosa tolerance, in normalised units
    # noise added after the trim (the previous training path) gives other features: the test can tell them apart
    after_trim = fitted_batch(recordings, config)
    after_trim = after_trim + (torch.stack(noisy)[:, :after_trim.shape[1]] - torch.stack(recordings)[:, :after_trim.shape[1]])
    old = normalizer.torch(TorchMFCC(config)(after_trim)).numpy()
    assert np.abs(old - expected).max() > 0.5


def test_vtlp_in_the_batches_is_seeded_and_validation_is_never_augmented(tmp_path):
    from tests.test_robust import tone_data

    data = tone_data()
    batches = waveform_batches(data, TrainConfig(vtlp=0.1))
    index = torch.arange(6)
    first = batches(index, torch.Generator().manual_seed(0))
    assert torch.equal(first, batches(index, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, batches(index, torch.Generator().manual_seed(1)))
    config = TrainConfig(model="model_b", model_overrides={"num_steps": 3}, epochs=2, batch_size=6, seed=5,
                         vtlp=0.15, noise_prob=0.5, noise_snr_min=0, noise_snr_max=20)
    results = train(config, DataConfig(), tmp_path / "run", progress=False, data=tone_data())
    model, _ = load_trained_model(tmp_path / "run" / "best.pt")
    # the validation accuracy that chose best.pt is that of the plain validation features
    assert evaluate(model, *data.val, num_classes=3)["accuracy"] == results["val_accuracy"]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["train_config"]["vtlp"] == 0.15


def test_the_switches_reach_the_run_config_from_the_command_line(capsys):
    from scnn.cli import main

    from pathlib import Path

    preset = Path(__file__).resolve().parents[1] / "configs" / "fsdd_model_b.yaml"
    config = main(["cv", "--config", str(preset), "--vtlp", "0.1", "data.utterance_norm=mean_var",
                   "--print-config"])
    assert config["train"]["vtlp"] == 0.1 and config["data"]["utterance_norm"] == "mean_var"
    assert "utterance_norm: mean_var" in capsys.readouterr().out


# --------------------------------------------------------------------------- random channel response (eq_db)

def test_eq_gains_follow_their_equation_are_seeded_and_bounded():
    from scnn.features.wave_augment import draw_eq_gains

    gains = draw_eq_gains(256, 6.0, 129, torch.Generator().manual_seed(0))
    assert gains.shape == (256, 129)
    assert torch.equal(gains, draw_eq_gains(256, 6.0, 129, torch.Generator().manual_seed(0)))
    assert not torch.equal(gains, draw_eq_gains(256, 6.0, 129, torch.Generator().manual_seed(1)))
    decibels = 10 * torch.log10(gains)
    assert decibels.abs().max() <= 6.0 * (1 + 1 / 2 + 1 / 3) + 1e-4  # |sum a_k cos| <= sum eq_db / k
    assert decibels.std(dim=1).mean() > 1.0  # curves, not flat gains
    # the first coefficient is a tilt: the ends of each curve move in opposite directions by 2 a_1 in total
    amplitudes = (torch.rand(256, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 6.0 / torch.arange(1., 4.)
    expected_ends = amplitudes.sum(1), (amplitudes * torch.tensor([-1., 1., -1.])).sum(1)
    assert torch.allclose(decibels[:, 0], expected_ends[0], atol=1e-4)
    assert torch.allclose(decibels[:, -1], expected_ends[1], atol=1e-4)
    with pytest.raises(ValueError, match="train.eq_db"):
        TrainConfig(eq_db=-1)
    assert TrainConfig(eq_db=6).waveform_augmentation


def test_eq_in_the_batches_filters_the_spectrum_and_is_seeded():
    from tests.test_robust import tone_data

    data = tone_data()
    index = torch.arange(6)
    plain = waveform_batches(data, TrainConfig(gain_db=1e-9))(index, torch.Generator().manual_seed(0))
    batches = waveform_batches(data, TrainConfig(eq_db=10.0))
    first = batches(index, torch.Generator().manual_seed(0))
    assert torch.equal(first, batches(index, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, batches(index, torch.Generator().manual_seed(1)))
    assert (first - plain).abs().mean() > 0.05
    with_vtlp = waveform_batches(data, TrainConfig(eq_db=10.0, vtlp=0.1))(index, torch.Generator().manual_seed(0))
    assert not torch.allclose(with_vtlp, first)


# --------------------------------------------------------------------------- speaker-level CMN / CMVN

def two_speakers(per_speaker=6, rows=5, frames=12, seed=0):
    """Features of two speakers, each with a constant cepstral offset of its own, and their names."""
    x = features(2 * per_speaker, rows, frames, seed)
    speakers = ["ann"] * per_speaker + ["bob"] * per_speaker
    keys = [f"{i}_{s}.wav" for i, s in enumerate(speakers)]
    offset = np.zeros((len(x), rows, 1), np.float32)
    offset[:per_speaker, :-1] = 4.0
    offset[per_speaker:, :-1] = -2.5
    return x, x + offset, speakers, keys


def test_speaker_cmn_takes_each_speakers_mean_over_its_recordings_and_frames():
    from scnn.features.speaker_norm import speaker_normalize, speaker_statistics

    plain, shifted, speakers, keys = two_speakers()
    mean, scale = speaker_statistics(shifted, speakers, keys, "mean")
    assert mean.shape == scale.shape == shifted.shape[:2] and np.all(scale == 1)
    for name in ("ann", "bob"):
        rows = [i for i, s in enumerate(speakers) if s == name]
        assert np.allclose(mean[rows], shifted[rows].mean(axis=(0, 2)), atol=1e-6)  # every row: its speaker's
    normed = speaker_normalize(shifted, speakers, keys, "mean")
    assert np.allclose(normed, speaker_normalize(plain, speakers, keys, "mean"), atol=1e-5)  # the offset is gone
    # unlike per-utterance CMN, what tells one recording of a speaker from another stays
    differences = normed.mean(-1)[1:6] - normed.mean(-1)[0]
    assert np.allclose(differences, plain.mean(-1)[1:6] - plain.mean(-1)[0], atol=1e-5)
    assert np.abs(differences).max() > 0.1
    assert np.array_equal(speaker_normalize(shifted, speakers, keys, "none"), shifted)


def test_speaker_cmvn_divides_by_the_speakers_spread_and_leaves_padded_rows():
    from scnn.features.speaker_norm import speaker_normalize, speaker_statistics

    plain, shifted, speakers, keys = two_speakers()
    scaled = shifted.copy()
    scaled[:6] *= 3.0
    _, scale = speaker_statistics(scaled, speakers, keys, "mean_var")
    assert np.allclose(scale[0, :-1], scaled[:6, :-1].transpose(1, 0, 2).reshape(4, -1).std(1), rtol=1e-5)
    assert np.all(scale[:, -1] == 1)  # the zero-padded row is not scaled
    normed = speaker_normalize(scaled, speakers, keys, "mean_var")
    assert np.allclose(normed, speaker_normalize(plain, speakers, keys, "mean_var"), atol=1e-4)


def test_an_enrolment_of_k_recordings_is_seeded_and_independent_of_row_order():
    from scnn.features.speaker_norm import speaker_statistics

    _, shifted, speakers, keys = two_speakers(per_speaker=10)
    mean, _ = speaker_statistics(shifted, speakers, keys, "mean", recordings=3, seed=0)
    ann = shifted[:10]
    # the mean of exactly three of ann's recordings
    from itertools import combinations
    assert any(np.allclose(mean[0], ann[list(c)].mean(axis=(0, 2)), atol=1e-6) for c in combinations(range(10), 3))
    assert not np.allclose(mean[0], ann.mean(axis=(0, 2)), atol=1e-3)
    order = np.random.default_rng(5).permutation(len(keys))
    shuffled, _ = speaker_statistics(shifted[order], [speakers[i] for i in order], [keys[i] for i in order], "mean",
                                     recordings=3, seed=0)
    assert np.allclose(shuffled, mean[order])  # the draw follows the file names, not the rows
    other, _ = speaker_statistics(shifted, speakers, keys, "mean", recordings=3, seed=1)
    assert not np.allclose(other, mean)


def test_speaker_norm_errors_name_the_setting_and_the_file():
    from scnn.features.speaker_norm import speaker_normalize

    with pytest.raises(ValueError, match="data.speaker_norm"):
        DataConfig(speaker_norm="per_speaker")
    with pytest.raises(ValueError, match="data.speaker_norm_recordings"):
        DataConfig(speaker_norm="mean", speaker_norm_recordings=-1)
    plain, _, speakers, keys = two_speakers()
    speakers[3] = None
    with pytest.raises(ValueError, match="3_ann.wav"):
        speaker_normalize(plain, speakers, keys, "mean")


def test_prepared_data_normalises_each_part_by_its_own_speakers(fsdd_dir, feature_cache):
    """Speaker-independent split: the test speaker's statistics come from the test recordings, the
    validation speaker's from the validation ones (each part centred per speaker before the standardising)."""
    from scnn.data.prepare import prepare_data

    config = DataConfig(data_dir=str(fsdd_dir), cache_dir=str(feature_cache), download=False, split="speaker",
                        holdout_speaker="george", num_val_speakers=1, speaker_norm="mean")
    data = prepare_data(config, progress=False)
    assert set(data.test_speakers) == {"george"} and len(set(data.val_speakers)) == 1
    for x in (data.train[0], data.val[0], data.test[0]):
        raw = x[:, 0].numpy() * data.normalizer.std[:, None] + data.normalizer.mean[:, None]
        assert np.abs(raw.mean(axis=(0, 2))).max() < 1e-3  # train: four speakers, each centred, so their sum is
    plain = prepare_data(DataConfig(**{**config.__dict__, "speaker_norm": "none"}), progress=False)
    assert not np.allclose(plain.test[0], data.test[0], atol=0.1)
    # the noise evaluation's path: features extracted anew and normalised by PreparedData.normalise
    raw_test = plain.test[0][:, 0].numpy() * plain.normalizer.std[:, None] + plain.normalizer.mean[:, None]
    assert np.allclose(data.normalise(raw_test, "test").numpy(), data.test[0].numpy(), atol=1e-4)
    assert np.allclose(data.normalise(raw_test + 3.0, "test").numpy(), data.test[0].numpy(), atol=1e-4)


def test_the_training_batches_subtract_each_recordings_speaker_mean():
    from tests.test_robust import tone_data

    data = tone_data()
    plain = waveform_batches(data, TrainConfig(gain_db=3))(torch.arange(6), torch.Generator().manual_seed(0))
    rows = data.feature_config.shape[0]
    mean = torch.zeros(len(data.train[1]), rows)
    mean[:, 2] = 1.5
    data.train_speaker_stats = (mean, torch.ones(len(data.train[1]), rows))
    shifted = waveform_batches(data, TrainConfig(gain_db=3))(torch.arange(6), torch.Generator().manual_seed(0))
    expected = plain.clone()
    expected[:, 0, 2] -= 1.5 / float(data.normalizer.std[2])
    assert torch.allclose(shifted, expected, atol=1e-4)
