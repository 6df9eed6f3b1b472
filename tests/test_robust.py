"""Robust training: the torch MFCC front end matches librosa's within its stated tolerance on FSDD
recordings; waveform augmentation and mixup are deterministic for a seed, change with it, and mix
noise at the SNR drawn; a run with them resumes exactly as it would have run uninterrupted."""

import json

import numpy as np
import pytest
import torch

from scnn.data.prepare import DataConfig, PreparedData
from scnn.features.mfcc import feature_config, load_audio, waveform_to_mfcc
from scnn.features.noise import measure_snr, spectral_slope
from scnn.features.normalize import Normalizer
from scnn.features.torch_mfcc import TorchMFCC, fitted_length, fitted_waveform
from scnn.features.wave_augment import augment_waveforms, mixup_batch, torch_coloured_noise
from scnn.io import load_checkpoint
from scnn.train import TrainConfig, train

# Largest |torch - librosa| of any MFCC value, on features whose values reach several hundred
# (c0 around -400 .. -800): float32 STFT and matrix products in another order. Measured 6e-4.
TORCH_MFCC_TOLERANCE = 0.01


@pytest.mark.parametrize("representation, rows, dynamic_range_db",
                         [("mfcc", 32, 80.0), ("logmel", 64, 80.0), ("mfcc", 32, 40.0), ("logmel", 64, 40.0)])
def test_torch_mfcc_matches_librosa_on_fsdd(fsdd_dir, representation, rows, dynamic_range_db):
    config = feature_config(representation=representation, dynamic_range_db=dynamic_range_db)
    files = sorted(fsdd_dir.glob("*.wav"))[::50]  # 60 recordings, every digit and speaker
    waveforms = [load_audio(path, config.sample_rate) for path in files]
    expected = np.stack([waveform_to_mfcc(w, config) for w in waveforms])
    fitted = torch.from_numpy(np.stack([fitted_waveform(w, config) for w in waveforms]))
    assert fitted.shape == (len(files), fitted_length(config))
    got = TorchMFCC(config)(fitted).numpy()
    assert got.shape == expected.shape == (len(files), rows, 32)
    assert np.abs(got - expected).max() < TORCH_MFCC_TOLERANCE
    assert np.abs(expected).max() > 30  # the tolerance is against values of this size (dB; MFCC c0 several hundred)


def test_torch_mfcc_pads_rows_and_refuses_what_it_does_not_compute():
    config = feature_config(num_rows=40)
    assert TorchMFCC(config)(torch.randn(2, fitted_length(config))).shape == (2, 40, 32)
    logmel = feature_config(representation="logmel", n_mels=32, num_rows=40)
    assert logmel.shape == (40, 32) and TorchMFCC(logmel)(torch.randn(2, fitted_length(logmel))).shape == (2, 40, 32)
    with pytest.raises(ValueError, match=r"num_rows \(20\) must be >= n_mels \(32\)"):
        feature_config(representation="logmel", n_mels=32, num_rows=20)
    with pytest.raises(ValueError, match="fit='center'"):
        TorchMFCC(feature_config("paper"))
    with pytest.raises(ValueError, match="representation='waveform'"):
        TorchMFCC(feature_config("waveform"))


ALL_ON = dict(noise_prob=0.7, snr_min=0.0, snr_max=20.0, gain_db=6.0, speed=0.1)


def test_waveform_augmentation_is_seeded():
    waveforms = torch.randn(8, 3968) * torch.hann_window(3968)
    first = augment_waveforms(waveforms, torch.Generator().manual_seed(0), **ALL_ON)
    again = augment_waveforms(waveforms, torch.Generator().manual_seed(0), **ALL_ON)
    other = augment_waveforms(waveforms, torch.Generator().manual_seed(1), **ALL_ON)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert torch.equal(augment_waveforms(waveforms, torch.Generator().manual_seed(0)), waveforms)  # all off
    for name in ("noise_prob", "gain_db", "speed"):
        only = augment_waveforms(waveforms, torch.Generator().manual_seed(0), **{name: ALL_ON[name]})
        assert not torch.equal(only, waveforms), name


def test_waveform_noise_has_the_drawn_snr_and_colour():
    waveforms = torch.randn(6, 4000)
    for snr in (0.0, 10.0, 20.0):
        noisy = augment_waveforms(waveforms, torch.Generator().manual_seed(3), noise_prob=1.0, snr_min=snr,
                                  snr_max=snr)
        for clean, mixed in zip(waveforms.numpy(), noisy.numpy()):
            assert abs(measure_snr(clean, mixed) - snr) < 0.1
    noise = torch_coloured_noise([0, 1, 2], 2 ** 15, torch.Generator().manual_seed(0)).numpy()
    for row, slope in zip(noise, (0.0, -1.0, -2.0)):
        assert spectral_slope(row) == pytest.approx(slope, abs=0.1)


def test_mixup_is_seeded_and_mixes_pairs():
    x = torch.arange(16.0).reshape(4, 1, 2, 2)
    mixed, partner, lam = mixup_batch(x, torch.Generator().manual_seed(0), 0.4)
    again, partner_again, lam_again = mixup_batch(x, torch.Generator().manual_seed(0), 0.4)
    assert torch.equal(mixed, again) and torch.equal(partner, partner_again) and lam == lam_again
    assert 0.0 <= lam <= 1.0
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[partner])
    draws = [mixup_batch(x, torch.Generator().manual_seed(s), 0.4)[2] for s in range(400)]
    assert np.mean(draws) == pytest.approx(0.5, abs=0.05)  # Beta(a, a) is symmetric about 1/2
    assert np.mean(np.array(draws) < 0.1) > 0.15  # and, for a < 1, piles up near 0 and 1


def test_augmentation_settings_are_checked():
    with pytest.raises(ValueError, match="train.noise_colours"):
        TrainConfig(noise_colours="white,grey")
    with pytest.raises(ValueError, match="train.noise_snr_max"):
        TrainConfig(noise_snr_min=10, noise_snr_max=0)
    with pytest.raises(ValueError, match="train.noise_prob"):
        TrainConfig(noise_prob=1.5)
    with pytest.raises(ValueError, match="train.speed"):
        TrainConfig(speed=0.9)
    assert TrainConfig(gain_db=3).waveform_augmentation and not TrainConfig(mixup=0.2).waveform_augmentation


def tone_data(per_class=6, classes=3, seed=0, waveforms=True) -> PreparedData:
    """Each class a tone of its own pitch in noise, as fitted waveforms and their MFCCs."""
    config = feature_config()
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(fitted_length(config)) / config.sample_rate

    def part(count):
        y = torch.arange(classes).repeat_interleave(count)
        pitch = 300.0 * (1 + y[:, None]) * (1 + 0.03 * torch.randn(len(y), 1, generator=generator))
        wave = torch.sin(2 * torch.pi * pitch * t) * torch.hann_window(t.numel()) \
            + 0.05 * torch.randn(len(y), t.numel(), generator=generator)
        return wave, y

    parts = [part(per_class), part(2), part(2)]
    front_end = TorchMFCC(config)
    mfcc = [front_end(wave).numpy() for wave, _ in parts]
    normalizer = Normalizer.fit(mfcc[0])
    return PreparedData(*[(torch.from_numpy(normalizer(m)).unsqueeze(1), y) for m, (_, y) in zip(mfcc, parts)],
                        class_names=[str(c) for c in range(classes)], normalizer=normalizer, feature_config=config,
                        data_dir="tones", train_waveforms=parts[0][0] if waveforms else None)


def robust_config(**overrides) -> TrainConfig:
    values = dict(model="model_b", model_overrides={"num_steps": 3}, epochs=3, batch_size=6, seed=5,
                  noise_prob=0.8, noise_snr_min=0, noise_snr_max=20, gain_db=6, speed=0.1, mixup=0.3)
    values.update(overrides)
    return TrainConfig(**values)


def test_robust_training_resumes_exactly_and_reaches_the_batches(tmp_path):
    config = robust_config()
    full = train(config, DataConfig(), tmp_path / "full", progress=False, data=tone_data())
    cut = train(config, DataConfig(), tmp_path / "cut", progress=False, data=tone_data(), stop_after_epochs=1)
    assert cut == {"interrupted_after_epoch": 1}
    resumed = train(config, DataConfig(), tmp_path / "cut", resume=True, progress=False, data=tone_data())
    weights = load_checkpoint(tmp_path / "full" / "last.pt")["model_state"]
    for key, value in load_checkpoint(tmp_path / "cut" / "last.pt")["model_state"].items():
        assert torch.equal(value, weights[key]), key
    assert resumed["test_accuracy"] == full["test_accuracy"]
    losses = [json.loads(r)["train_loss"] for r in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    train(robust_config(noise_prob=0.0, gain_db=0, speed=0, mixup=0), DataConfig(), tmp_path / "plain",
          progress=False, data=tone_data())
    plain = [json.loads(r)["train_loss"] for r in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert losses != plain  # the augmentation reached the batches


def test_waveform_augmentation_without_waveforms_is_refused(tmp_path):
    with pytest.raises(ValueError, match="keep_waveforms=True"):
        train(robust_config(epochs=1), DataConfig(), tmp_path / "run", progress=False,
              data=tone_data(waveforms=False))


def _write_wav(path, samples, rate=8000):
    import soundfile

    soundfile.write(str(path), np.asarray(samples, np.float32), rate)
    return path


def test_noise_recordings_join_the_colours_at_the_drawn_snr(tmp_path):
    from scnn.features.wave_augment import load_noise_folder

    hum = np.sin(2 * np.pi * 50 * np.arange(3000) / 8000)
    _write_wav(tmp_path / "hum.wav", 0.1 * hum)
    recordings = load_noise_folder(str(tmp_path), 8000)
    waveforms = torch.randn(12, 4000)
    options = dict(noise_prob=1.0, snr_min=10.0, snr_max=10.0, noise_colours=("white",))
    with_files = augment_waveforms(waveforms, torch.Generator().manual_seed(2), recordings=recordings, **options)
    again = augment_waveforms(waveforms, torch.Generator().manual_seed(2), recordings=recordings, **options)
    without = augment_waveforms(waveforms, torch.Generator().manual_seed(2), **options)
    assert torch.equal(with_files, again) and not torch.equal(with_files, without)
    hummed = 0
    for clean, mixed in zip(waveforms.numpy(), with_files.numpy()):
        assert abs(measure_snr(clean, mixed) - 10.0) < 0.1
        spectrum = np.abs(np.fft.rfft(mixed - clean))
        hummed += int(np.argmax(spectrum) == 25)  # 50 Hz in 4000 samples at 8 kHz: bin 25
    assert 0 < hummed < 12  # some rows drew the recording, some white noise


def test_bad_noise_folders_are_named(tmp_path):
    from scnn.features.wave_augment import load_noise_folder

    with pytest.raises(ValueError, match="is not a folder"):
        load_noise_folder(str(tmp_path / "missing"), 8000)
    with pytest.raises(ValueError, match="no .wav files"):
        load_noise_folder(str(tmp_path), 8000)
    _write_wav(tmp_path / "good.wav", np.random.default_rng(0).standard_normal(800) * 0.1)
    _write_wav(tmp_path / "quiet.wav", np.zeros(800))
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match=r"2 of 3 noise files.*broken\.wav.*quiet\.wav"):
        load_noise_folder(str(tmp_path), 8000)
    with pytest.raises(ValueError, match="train.noise_prob is 0"):
        TrainConfig(noise_dir=str(tmp_path))


def test_training_with_a_noise_folder(tmp_path):
    folder = tmp_path / "noise"
    folder.mkdir()
    _write_wav(folder / "fan.wav", np.random.default_rng(1).standard_normal(5000) * 0.2)
    config = robust_config(epochs=1, noise_dir=str(folder), noise_prob=1.0, gain_db=0, speed=0, mixup=0)
    result = train(config, DataConfig(), tmp_path / "run", progress=False, data=tone_data())
    assert result["epochs_run"] == 1
