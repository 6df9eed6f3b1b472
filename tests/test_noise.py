"""Noise mixing is exact (the SNR measured on the mixture is the one asked, within 0.1 dB), each colour
has its spectral slope, a seed gives the same noise, and the noise evaluation of a checkpoint writes an
accuracy-against-SNR table whose clean row equals the checkpoint's plain evaluation."""

import numpy as np
import pytest

from scnn.features.noise import (NOISE_KINDS, babble_noise, coloured_noise, make_noise, measure_snr, mix_at_snr,
                                 spectral_slope)


def _tone(length=6000, rate=8000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    envelope = np.hanning(length)
    return (0.3 * envelope * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(length)).astype(np.float32)


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("snr_db", [30.0, 20.0, 10.0, 5.0, 0.0, -5.0])
def test_mixing_reaches_the_asked_snr_within_0_1_db(kind, snr_db):
    signal = _tone()
    others = [_tone(4000, seed=1), _tone(9000, seed=2), _tone(7000, seed=3)]
    noise = make_noise(kind, signal.size, np.random.default_rng(7), others)
    noisy = mix_at_snr(signal, noise, snr_db)
    assert noisy.dtype == np.float32 and noisy.shape == signal.shape
    assert abs(measure_snr(signal, noisy) - snr_db) < 0.1
    assert abs(measure_snr(signal, noisy) - snr_db) < 1e-3  # float32 rounding only


def test_mixing_real_recordings_within_0_1_db(fsdd_dir):
    from scnn.features.mfcc import load_audio

    files = sorted(fsdd_dir.glob("*.wav"))[:6]
    waveforms = [load_audio(path, 8000) for path in files]
    for row, waveform in enumerate(waveforms):
        for kind in NOISE_KINDS:
            noise = make_noise(kind, waveform.size, np.random.default_rng(row), waveforms[:row] + waveforms[row + 1:])
            for snr_db in (20, 10, 0):
                assert abs(measure_snr(waveform, mix_at_snr(waveform, noise, snr_db)) - snr_db) < 0.1, (files[row], kind)


def test_colours_have_their_spectral_slopes_and_unit_rms():
    for colour, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        noise = coloured_noise(colour, 2 ** 15, np.random.default_rng(0))
        assert np.sqrt(np.mean(noise ** 2)) == pytest.approx(1.0, abs=1e-9)
        assert abs(noise.mean()) < 1e-9
        assert spectral_slope(noise) == pytest.approx(slope, abs=0.1), colour


def test_noise_is_seeded():
    others = [_tone(5000, seed=s) for s in range(5)]
    for kind in NOISE_KINDS:
        first = make_noise(kind, 3000, np.random.default_rng(3), others)
        again = make_noise(kind, 3000, np.random.default_rng(3), others)
        other = make_noise(kind, 3000, np.random.default_rng(4), others)
        np.testing.assert_array_equal(first, again)
        assert not np.allclose(first, other), kind


def test_babble_sums_the_recordings_it_is_given():
    # 10, 20 and 30 whole cycles per 800 samples: looped to 1600 they are 20, 40 and 60 cycles.
    voices = [np.sin(2 * np.pi * cycles * np.arange(800) / 800) for cycles in (10, 20, 30)]
    babble = babble_noise(1600, voices, np.random.default_rng(0), talkers=3)
    spectrum = np.abs(np.fft.rfft(babble))
    assert sorted(np.argsort(spectrum)[-3:]) == [20, 40, 60]
    assert spectrum[[20, 40, 60]].min() > 1e6 * np.delete(spectrum, [20, 40, 60]).max()


def test_bad_noise_requests_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown noise kind 'purple'"):
        make_noise("purple", 100, rng)
    with pytest.raises(ValueError, match="babble noise needs other recordings"):
        make_noise("babble", 100, rng, [])
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(np.zeros(100, np.float32), np.ones(100), 10)
    with pytest.raises(ValueError, match="shape"):
        mix_at_snr(np.ones(100, np.float32), np.ones(50), 10)
    with pytest.raises(ValueError, match="finite"):
        mix_at_snr(np.ones(100, np.float32), np.ones(100), float("inf"))


def test_noise_arguments_are_checked():
    from scnn.train.noise_eval import parse_noise_kinds, parse_snrs

    assert parse_noise_kinds("white, pink,babble,white") == ["white", "pink", "babble"]
    assert parse_snrs("20,10,5,0") == [20.0, 10.0, 5.0, 0.0]
    with pytest.raises(ValueError, match="--noise: unknown noise kind.*'grey'"):
        parse_noise_kinds("white,grey")
    with pytest.raises(ValueError, match="--snr: expected"):
        parse_snrs("20,loud")
    with pytest.raises(ValueError, match="--snr: expected finite"):
        parse_snrs("inf")


def test_noise_evaluation_of_a_checkpoint(tiny_snn_run, tmp_path):
    from scnn.result_tables import read_table
    from scnn.train import evaluate_checkpoint
    from scnn.train.noise_eval import noise_evaluation

    checkpoint = tiny_snn_run / "best.pt"
    plain = evaluate_checkpoint(checkpoint, tmp_path / "plain", progress=False)
    rows = noise_evaluation(checkpoint, tmp_path / "noisy", ["white"], [40, -10], seed=0, device="cpu")
    assert [(r["noise"], r["snr_db"]) for r in rows] == [("none", None), ("white", 40.0), ("white", -10.0)]
    # The clean row goes through the waveform path and must agree with the cached features exactly.
    assert rows[0]["accuracy"] == plain["test_accuracy"]
    assert all(r["num_test"] == plain["num_test"] == 300 for r in rows)
    for r in rows[1:]:
        assert abs(r["measured_snr_db_min"] - r["snr_db"]) < 0.1 and abs(r["measured_snr_db_max"] - r["snr_db"]) < 0.1
    # -10 dB of white noise leaves a one-epoch model near chance, well below clean.
    assert rows[2]["accuracy"] < rows[0]["accuracy"]
    assert read_table(tmp_path / "noisy" / "noise.csv", "noise") == rows
    assert (tmp_path / "noisy" / "noise.png").stat().st_size > 0
    again = noise_evaluation(checkpoint, tmp_path / "again", ["white"], [40, -10], seed=0, device="cpu")
    assert again == rows  # same seed, same numbers


def test_noise_evaluation_on_the_validation_recordings(tiny_snn_run, tmp_path):
    """part="val": the checkpoint's validation recordings (never the test ones), for choosing a recipe."""
    from scnn.data.prepare import checkpoint_data
    from scnn.io import load_checkpoint
    from scnn.result_tables import read_table
    from scnn.train.evaluate import evaluate, load_trained_model
    from scnn.train.noise_eval import noise_evaluation

    checkpoint = tiny_snn_run / "best.pt"
    data = checkpoint_data(load_checkpoint(checkpoint), None, False)
    assert len(data.val_files) == len(data.val[1]) > 0 and not set(data.val_files) & set(data.test_files)
    model, _ = load_trained_model(checkpoint)
    rows = noise_evaluation(checkpoint, tmp_path / "out", ["white"], [40, -10], seed=0, device="cpu", part="val")
    # the clean row through the waveform path equals the prepared validation features' accuracy
    assert rows[0]["accuracy"] == evaluate(model, *data.val, num_classes=10)["accuracy"]
    assert all(r["num_test"] == len(data.val_files) for r in rows)
    assert read_table(tmp_path / "out" / "noise_val.csv", "noise") == rows
    assert not (tmp_path / "out" / "noise.csv").exists()
    with pytest.raises(ValueError, match="part must be 'test' or 'val'"):
        noise_evaluation(checkpoint, tmp_path / "bad", ["white"], [10], part="train")


@pytest.mark.parametrize("flags, message", [
    (["--noise", "white,grey"], "--noise: unknown noise kind(s) ['grey']"),
    (["--noise", "white", "--snr", "20,loud"], "--snr: expected comma-separated numbers"),
])
def test_evaluate_refuses_bad_noise_flags_before_evaluating(flags, message, capsys, tmp_path):
    from scnn.cli import main

    # The checkpoint does not exist either: the noise flags are checked first, so their error shows.
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "out"), *flags])
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
