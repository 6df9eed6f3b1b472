"""Listening as the audio arrives: causal features, frame-by-frame models, the Streamer."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from scnn.features.causal import CausalMfcc, causal_mfcc
from scnn.features.encoders import get_encoder
from scnn.features.mfcc import FeatureConfig, feature_config, waveform_to_mfcc
from scnn.models import create_model
from scnn.neurons import reset_net

REPO = Path(__file__).resolve().parents[1]
CAUSAL = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=40, n_mfcc=20)


def _speech_like(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 8000
    return (0.3 * np.sin(2 * np.pi * 300 * t * (1 + t)) + 0.05 * rng.standard_normal(samples)).astype(np.float32)


# --------------------------------------------------------------------------- causal features


def test_causal_mfcc_is_librosas_mfcc_of_the_left_padded_stream():
    import librosa

    audio = _speech_like(3000)
    ours = causal_mfcc(audio, **CAUSAL)
    assert ours.shape == (20, 3000 // 128)
    stream = np.concatenate([np.zeros(256 - 128, np.float32), audio])
    mel = librosa.feature.melspectrogram(y=stream, sr=8000, n_fft=256, hop_length=128, n_mels=40, center=False)
    reference = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=20)
    assert np.allclose(ours, reference[:, : ours.shape[1]], atol=1e-3)


def test_causal_mfcc_in_chunks_equals_the_whole_and_sees_no_future_sample():
    audio = _speech_like(4000, seed=1)
    whole = causal_mfcc(audio, **CAUSAL)
    stream = CausalMfcc(**CAUSAL)
    sizes = [1, 127, 128, 129, 300, 5, 1000]
    pieces, start = [], 0
    for size in sizes * 3:
        pieces.append(stream.push(audio[start:start + size]))
        start += size
    pieces.append(stream.push(audio[start:]))
    assert np.array_equal(np.concatenate(pieces).T, whole)
    changed = audio.copy()
    changed[20 * 128:] += 0.5  # from frame 19's end on
    after = causal_mfcc(changed, **CAUSAL)
    assert np.array_equal(after[:, :20], whole[:, :20])
    assert not np.allclose(after[:, 20], whole[:, 20])


def test_the_causal_feature_preset_and_its_checks():
    config = feature_config("causal")
    matrix = waveform_to_mfcc(_speech_like(5000), config)
    assert matrix.shape == config.shape == (20, 64)
    with pytest.raises(ValueError, match="top_db must be None and level 'none' for representation 'causal_mfcc'"):
        FeatureConfig(representation="causal_mfcc", top_db=30.0)


# --------------------------------------------------------------------------- frame-by-frame models


def test_the_frames_encoding_gives_one_frame_per_step():
    x = torch.arange(2 * 1 * 3 * 5, dtype=torch.float32).reshape(2, 1, 3, 5)
    encoder = get_encoder("frames")
    frames = encoder.encode(x, 99)
    assert encoder.kind == "sequence" and frames.shape == (5, 2, 1, 3, 1)
    for t in range(5):
        assert torch.equal(frames[t, ..., 0], x[..., t])


@pytest.mark.parametrize("preset", ["streaming", "streaming_rleaky"])
def test_a_streaming_model_is_causal_and_steps_as_it_runs(preset):
    torch.manual_seed(0)
    model = create_model(preset, input_shape=(1, 20, 30), threshold=0.5).eval()
    x = torch.randn(2, 1, 20, 30) * 2
    with torch.no_grad():
        output = model(x, record=True)
        assert output.membrane.shape == (30, 2, 10) and output.logits.shape == (2, 10)
        assert all(spikes.sum() > 0 for spikes in output.layer_spikes[:-1])  # the layers are active
        for k in (0, 12, 29):
            changed = x.clone()
            changed[..., k] += 3.0
            after = model(changed).membrane
            assert torch.equal(after[:k], output.membrane[:k])  # no earlier frame hears it
            assert not torch.allclose(after[k:], output.membrane[k:])
        reset_net(model)
        stepped = torch.stack([model.step(x[..., t]).logits for t in range(30)])
    assert torch.allclose(stepped, output.membrane, atol=1e-5)


def test_streaming_model_options_are_checked_by_name():
    with pytest.raises(ValueError, match="kernel must be odd"):
        create_model("streaming", kernel=4)
    with pytest.raises(ValueError, match="unknown neuron 'nope'"):
        create_model("streaming", neuron="nope")
    with pytest.raises(ValueError, match=r"input_shape must be \(1, coefficients, frames\)"):
        create_model("streaming", input_shape=(2, 20, 64))
    model = create_model("streaming_rleaky", hidden=(8,), neuron_options={"all_to_all": False})
    assert [type(n).neuron_name for n in model.neurons()] == ["leaky", "rleaky", "leaky"]


def _class_folders(root: Path, fsdd_dir: Path, digits=(0, 1, 2), per_class: int = 8) -> Path:
    for digit in digits:
        (root / str(digit)).mkdir(parents=True)
        for path in sorted(fsdd_dir.glob(f"{digit}_*.wav"))[:per_class]:
            (root / str(digit) / path.name).symlink_to(path)
    return root


def test_the_streaming_config_trains_through_the_command(tmp_path, fsdd_dir):
    from scnn.cli import main

    data = _class_folders(tmp_path / "digits", fsdd_dir)
    results = main(["train", "--config", str(REPO / "configs" / "fsdd_streaming.yaml"), "--data-dir", str(data),
                    "--out", str(tmp_path / "run"), "--threads", "1", "data.dataset=folders", "data.split=random",
                    "data.test_fraction=0.25", f"data.cache_dir={tmp_path / 'cache'}", "train.epochs=1",
                    "model.hidden=[16]"])
    assert results["run_config"]["model"]["name"] == "streaming"
    assert results["run_config"]["data"]["feature_preset"] == "causal_prior"
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert len(checkpoint["feature_config"]["mean_prior"]) == 20  # fitted on this run's training split
    assert checkpoint["model"]["family"] == "streaming"
    assert tuple(checkpoint["model"]["config"]["input_shape"]) == (1, 20, 64)
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["split_sizes"]["test"] == 6

    # benchmarks/stream_cost.py on that checkpoint: both engines timed, SynOps per second of audio
    sys.path.insert(0, str(REPO / "benchmarks"))
    import stream_cost

    cost = stream_cost.main(["--checkpoint", str(tmp_path / "run" / "best.pt"), "--samples", "3", "--repeats", "1",
                             "--out", str(tmp_path / "cost")])
    assert cost["samples"] == 3 and cost["frame_ms"] == 16.0
    assert set(cost["ms_per_frame"]) == {"front_end", "numpy_frame_runner_total", "torch_step_total"}
    assert all(value > 0 for value in cost["ms_per_frame"].values())
    assert cost["seconds_of_audio_per_sample"] == pytest.approx(64 * 0.016)
    assert cost["synops_per_second_of_audio"] == pytest.approx(cost["synops_per_sample"] / (64 * 0.016))
    assert json.loads((tmp_path / "cost" / "stream_cost.json").read_text())["samples"] == 3

    # --integer: the quantised model as numpy IntegerStreamer and exported C (bit-exact checked inside)
    from scnn.data.prepare import checkpoint_data
    from scnn.quant import quantize
    from scnn.quant.integer import export_integer, save_integer
    from scnn.train.evaluate import load_trained_model

    model, saved = load_trained_model(tmp_path / "run" / "best.pt")
    data = checkpoint_data(saved)
    quantized = quantize(model, calibration_data=data.train[0]).eval()
    save_integer(*export_integer(quantized, data.feature_config, data.normalizer), tmp_path / "int8" / "integer")
    cost = stream_cost.main(["--checkpoint", str(tmp_path / "run" / "best.pt"), "--samples", "2", "--repeats", "1",
                             "--integer", str(tmp_path / "int8" / "integer"), "--c-passes", "3000",
                             "--out", str(tmp_path / "cost_int")])
    integer = cost["ms_per_frame_integer_from_codes"]
    assert integer["c_bit_exact_with_numpy"] and integer["c_O3"] > 0 and integer["numpy_integer_streamer"] > 0


# --------------------------------------------------------------------------- the Streamer


def test_the_prior_is_fitted_on_the_training_split_and_kept_with_the_checkpoint(tmp_path, fsdd_dir):
    from scnn.data.prepare import DataConfig, checkpoint_data, checkpoint_features, prepare_data
    from scnn.features.causal import fit_mean_prior
    from scnn.features.mfcc import load_audio
    from scnn.features.torch_mfcc import fitted_waveform

    data_dir = _class_folders(tmp_path / "digits", fsdd_dir, per_class=6)
    config = DataConfig(data_dir=str(data_dir), dataset="folders", split="random", test_fraction=0.25,
                        feature_preset="causal_prior", cache_dir=str(tmp_path / "cache"))
    data = prepare_data(config, progress=False)
    features = data.feature_config
    assert features.mean_prior_frames == 2.0 and len(features.mean_prior) == 20
    train_audio = [fitted_waveform(load_audio(path, 8000), features) for path in data.train_files]
    assert features.mean_prior == fit_mean_prior(train_audio, features)  # the training split's, nothing else
    assert len(data.train_files) < 18  # validation and test recordings were left out of it

    checkpoint = {"data_config": asdict(config), "feature_config": asdict(features),
                  "normalizer": data.normalizer.state_dict()}
    # evaluation rebuilds the data with the checkpoint's prior, even where its training split differs
    fewer = checkpoint_data(checkpoint, {"train_per_class": 1}, progress=False)
    assert fewer.feature_config.mean_prior == features.mean_prior
    refitted = prepare_data(DataConfig(**{**asdict(config), "train_per_class": 1}), progress=False)
    assert refitted.feature_config.mean_prior != features.mean_prior
    assert np.array_equal(fewer.test[0].numpy(), data.test[0].numpy())
    assert checkpoint_features(checkpoint) == features  # what the Streamer builds its front end from


def _streaming_setup(preset: str = "causal", seed: int = 0):
    """An untrained streaming with active layers and a normaliser fitted on causal features of noise-like audio."""
    from scnn.features.normalize import Normalizer

    torch.manual_seed(seed)
    model = create_model("streaming", input_shape=(1, 20, 64), threshold=0.5, hidden=(32, 32)).eval()
    features = feature_config(preset)
    if features.mean_prior_frames:  # the prior a training run fits on its training recordings
        from dataclasses import replace

        from scnn.features.causal import fit_mean_prior

        features = replace(features, mean_prior=fit_mean_prior([_speech_like(8192, seed=s) for s in range(4)], features))
    examples = np.stack([waveform_to_mfcc(_speech_like(8192, seed=s), features) for s in range(4)])
    return model, features, Normalizer.fit(examples)


def _digits_file(fsdd_dir: Path, digits=(3, 7, 1), silence_s: float = 0.6) -> tuple[np.ndarray, list]:
    """FSDD recordings of ``digits`` with silence between: (waveform, [(start_s, end_s)] of each recording)."""
    from scnn.features.mfcc import load_audio

    gap = np.zeros(int(silence_s * 8000), np.float32)
    pieces, spans, position = [gap], [], len(gap)
    for digit in digits:
        audio = load_audio(sorted(fsdd_dir.glob(f"{digit}_jackson_*.wav"))[0], 8000)
        pieces += [audio, gap]
        spans.append((position / 8000, (position + len(audio)) / 8000))
        position += len(audio) + len(gap)
    return np.concatenate(pieces), spans


@pytest.mark.parametrize("chunk_ms, engine, preset", [(16.0, "numpy", "causal"), (7.0, "numpy", "causal"),
                                                       (100.0, "numpy", "causal"), (16.0, "torch", "causal"),
                                                       (7.0, "numpy", "causal_norm"), (16.0, "torch", "causal_norm"),
                                                       (7.0, "numpy", "causal_gated"), (16.0, "torch", "causal_gated"),
                                                       (7.0, "numpy", "causal_prior"), (16.0, "torch", "causal_prior")])
def test_the_streamer_equals_the_offline_pass(chunk_ms, engine, preset):
    from scnn.stream import Streamer, offline_evidence

    model, features, normalizer = _streaming_setup(preset)
    audio = np.concatenate([_speech_like(5000, seed=5), np.zeros(2000, np.float32), _speech_like(3000, seed=6)])
    streamer = Streamer(model, features, normalizer, engine=engine)
    assert streamer.engine == engine
    evidence, levels = streamer.run(audio, chunk_ms=chunk_ms)
    offline = offline_evidence(model, features, normalizer, audio)
    assert evidence.shape == offline.shape == (len(audio) // 128, 10) and levels.shape == (len(audio) // 128,)
    assert np.abs(evidence).max() > 0.1 and np.ptp(evidence, axis=0).max() > 0.1  # evidence moves over time
    assert np.allclose(evidence, offline, atol=1e-4)
    again, _ = streamer.run(audio, chunk_ms=chunk_ms)  # run() starts a fresh stream: the state was reset
    assert np.array_equal(again, evidence)


def test_a_streamer_that_resets_after_silence_starts_the_next_word_from_rest():
    from scnn.stream import Streamer

    model, features, normalizer = _streaming_setup()
    audio = np.concatenate([_speech_like(3000, seed=7), np.zeros(4000, np.float32), _speech_like(3000, seed=8)])
    streamer = Streamer(model, features, normalizer, reset_after_silence_s=0.2)
    evidence, levels = streamer.run(audio, chunk_ms=16.0)
    silent_from = 3000 // 128 + 1  # the first frame wholly in the gap
    assert streamer.reset_at == [silent_from + 11]  # once, at the 12th silent frame (0.2 s = 12.5 frames)
    reset = streamer.reset_at[0]
    mfcc = causal_mfcc(audio, **CAUSAL)
    x = torch.from_numpy(normalizer(mfcc))[None, None]
    with torch.no_grad():
        fresh = model(x[..., reset:]).membrane[:, 0].numpy()  # a model at rest from the reset frame on
        carried = model(x).membrane[reset:, 0].numpy()
        before = model(x).membrane[:reset, 0].numpy()
    assert np.allclose(evidence[reset:], fresh, atol=1e-4)
    assert np.allclose(evidence[:reset], before, atol=1e-4)
    assert not np.allclose(fresh, carried, atol=1e-3)  # the reset changed what came after
    with pytest.raises(ValueError, match="reset_after_silence_s must be positive"):
        Streamer(model, features, normalizer, reset_after_silence_s=0.0)


def test_only_frame_by_frame_models_on_causal_features_stream():
    from scnn.stream import Streamer

    model, features, normalizer = _streaming_setup()
    with pytest.raises(ValueError, match="streaming needs a model fed frame by frame"):
        Streamer(create_model("model_b"), features, normalizer)
    with pytest.raises(ValueError, match="streaming needs representation 'causal_mfcc'"):
        Streamer(model, feature_config("default"), normalizer)


def test_detections_take_the_class_with_most_evidence_in_each_word():
    from scnn.stream import detect

    levels = np.full(100, -80.0, np.float32)
    levels[10:30] = -20.0
    levels[33:36] = -21.0  # a 3-frame gap (48 ms) is one word with the run before
    levels[60:62] = -25.0  # 32 ms: too short for a word
    levels[70:90] = -22.0
    evidence = np.zeros((100, 4), np.float32)
    evidence[10:45, 2] = 5.0
    evidence[70:100, 1] = 5.0
    found = detect(evidence, levels, 0.016, ["a", "b", "c", "d"], min_gap_s=0.1, min_duration_s=0.1)
    assert [(d.name, round(d.start_s, 3), round(d.end_s, 3)) for d in found] == [("c", 0.16, 0.576),
                                                                                ("b", 1.12, 1.44)]
    assert all(0.9 < d.confidence <= 1.0 for d in found)


def test_a_long_file_of_several_digits_is_split_into_words(fsdd_dir):
    from scnn.stream import Streamer, detect

    model, features, normalizer = _streaming_setup()
    audio, spans = _digits_file(fsdd_dir)
    streamer = Streamer(model, features, normalizer)
    evidence, levels = streamer.run(audio)
    found = detect(evidence, levels, streamer.frame_seconds, streamer.class_names)
    assert len(found) == len(spans) == 3
    for word, (start, end) in zip(found, spans):
        assert start - 0.02 <= word.start_s < word.end_s <= end + 0.05  # inside its recording


def test_scnn_stream_prints_what_it_hears_and_draws_the_evidence(tmp_path, fsdd_dir, capsys):
    from scnn.cli import main
    from scnn.data.prepare import DataConfig
    from scnn.io import save_checkpoint
    from scnn.models import model_to_dict

    model, features, normalizer = _streaming_setup()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, {"model": model_to_dict(model), "model_state": model.state_dict(),
                                 "data_config": asdict(DataConfig(feature_preset="causal")),
                                 "normalizer": normalizer.state_dict(), "class_names": [f"d{i}" for i in range(10)]})
    audio, spans = _digits_file(fsdd_dir)
    wav = tmp_path / "digits.wav"
    soundfile.write(wav, audio, 8000)
    result = main(["stream", str(wav), "--checkpoint", str(checkpoint), "--plot", str(tmp_path / "evidence.png")])
    printed = capsys.readouterr().out
    assert "3 word(s) detected:" in printed and "silence" in printed and "hears d" in printed
    assert printed.count("\n") > len(audio) / 8000 / 0.25  # a line every 0.25 s of audio
    assert len(result["detections"]) == 3 and result["real_time_factor"] > 0
    assert (tmp_path / "evidence.png").stat().st_size > 10_000
    with pytest.raises(SystemExit) as stopped:
        main(["stream", str(tmp_path / "missing.wav"), "--checkpoint", str(checkpoint)])
    assert stopped.value.code == 2
    assert "audio file" in capsys.readouterr().err
    # trained with speaker-level CMN: refused without the listener's recordings, run with them
    speaker_checkpoint = tmp_path / "speaker_norm.pt"
    save_checkpoint(speaker_checkpoint, {**torch.load(checkpoint, weights_only=True),
                                         "data_config": asdict(DataConfig(feature_preset="causal", speaker_norm="mean"))})
    with pytest.raises(SystemExit):
        main(["stream", str(wav), "--checkpoint", str(speaker_checkpoint)])
    assert "--enrol" in capsys.readouterr().err
    enrolled = main(["stream", str(wav), "--checkpoint", str(speaker_checkpoint), "--enrol", str(wav),
                     "--plot", str(tmp_path / "enrolled.png")])
    assert len(enrolled["detections"]) >= 1


# --------------------------------------------------------------------------- causal normalisation

NORMALISED = dict(CAUSAL, peak_range_db=60.0, running_mean_frames=8.0)


def test_running_level_reference_follows_its_equation():
    audio = _speech_like(3000, seed=3)
    absolute = CausalMfcc(**CAUSAL)
    relative = causal_mfcc(audio, **dict(CAUSAL, peak_range_db=60.0))
    # the same log-mel, then R[t] = max over frames <= t and bins, floored 60 dB below: rebuild it from M
    stream = np.concatenate([np.zeros(128, np.float64), audio.astype(np.float64)])
    frames = np.stack([stream[t * 128: t * 128 + 256] for t in range(3000 // 128)])
    log_mel = 10 * np.log10(np.maximum((np.abs(np.fft.rfft(frames * absolute.window, axis=1)) ** 2)
                                       @ absolute.mel_filters.T, 1e-10))
    loudest = np.maximum.accumulate(log_mel.max(axis=1))
    expected = (np.maximum(log_mel - loudest[:, None], -60.0) @ absolute.dct.T).T
    assert np.allclose(relative, expected, atol=1e-4)
    # a gain changes the absolute features but not the relative ones (no bin at the floor moves)
    louder = causal_mfcc(audio * 4.0, **dict(CAUSAL, peak_range_db=60.0))
    assert not np.allclose(causal_mfcc(audio * 4.0, **CAUSAL), causal_mfcc(audio, **CAUSAL), atol=1.0)
    assert np.allclose(louder, relative, atol=1e-3)


def test_running_cepstral_mean_removes_a_constant_offset_and_is_causal():
    audio = _speech_like(4000, seed=4)
    plain = causal_mfcc(audio, **CAUSAL)
    normalised = causal_mfcc(audio, **dict(CAUSAL, running_mean_frames=8.0))
    decay, total, weight = 1 - 1 / 8, np.zeros(20), 0.0
    for t in range(plain.shape[1]):
        total, weight = decay * total + plain[:, t], decay * weight + 1
        assert np.allclose(normalised[:, t], plain[:, t] - total / weight, atol=1e-4)
    assert np.allclose(normalised[:, 0], 0.0)
    # in chunks: the same numbers; a future change leaves earlier frames alone
    stream, pieces = CausalMfcc(**NORMALISED), []
    for start in range(0, 4000, 77):
        pieces.append(stream.push(audio[start:start + 77]))
    assert np.array_equal(np.concatenate(pieces).T, causal_mfcc(audio, **NORMALISED))
    changed = audio.copy()
    changed[20 * 128:] *= 3.0
    before, after = causal_mfcc(audio, **NORMALISED), causal_mfcc(changed, **NORMALISED)
    assert np.array_equal(after[:, :20], before[:, :20]) and not np.allclose(after[:, 21], before[:, 21])


GATED = dict(NORMALISED, mean_gate_db=20.0)


def _assert_chunked_equals_whole_and_causal(options: dict, audio: np.ndarray, whole: np.ndarray) -> CausalMfcc:
    """The front end of ``options`` fed ``audio`` in 77-sample chunks gives ``whole`` ``[n_mfcc, frames]``,
    and a change from frame 30 on leaves the frames before it alone; returns the chunked front end."""
    pieces, chunked = [], CausalMfcc(**options)
    for begin in range(0, len(audio), 77):
        pieces.append(chunked.push(audio[begin:begin + 77]))
    assert np.array_equal(np.concatenate(pieces).T, whole)
    changed = audio.copy()
    changed[30 * 128:] *= 3.0
    assert np.array_equal(CausalMfcc(**options).push(changed).T[:, :30], whole[:, :30])
    return chunked


def test_gated_running_mean_follows_its_equation_and_ignores_the_silence_before_a_word():
    word = _speech_like(3000, seed=9)
    quiet = np.random.default_rng(1).normal(0, 1e-4, 2048).astype(np.float32)  # room noise ~ 60 dB below, 16 hops
    audio = np.concatenate([quiet, word])
    relative = causal_mfcc(audio, **dict(CAUSAL, peak_range_db=60.0))  # C[t] after the level reference
    gated = causal_mfcc(audio, **GATED)
    # rebuild L[t] and R[t] from the log-mel, then the gated mean by its equation
    front = CausalMfcc(**CAUSAL)
    stream = np.concatenate([np.zeros(128, np.float64), audio.astype(np.float64)])
    frames = np.stack([stream[t * 128: t * 128 + 256] for t in range(len(audio) // 128)])
    frame_loudest = (10 * np.log10(np.maximum((np.abs(np.fft.rfft(frames * front.window, axis=1)) ** 2)
                                              @ front.mel_filters.T, 1e-10))).max(axis=1)
    loudest = np.maximum.accumulate(frame_loudest)
    decay, total, weight, start, restarts = 1 - 1 / 8, np.zeros(20), 0.0, -np.inf, []
    for t in range(relative.shape[1]):
        if loudest[t] > start + 20.0:
            total, weight, start = np.zeros(20), 0.0, loudest[t]
            restarts.append(t)
        if frame_loudest[t] >= loudest[t] - 20.0:
            total, weight = decay * total + relative[:, t], decay * weight + 1
        expected = relative[:, t] - total / weight if weight > 0 else relative[:, t]
        assert np.allclose(gated[:, t], expected, atol=1e-4), t
    onset = 2048 // 128
    assert restarts[0] == 0 and any(onset - 1 <= t <= onset + 2 for t in restarts[1:]), restarts
    # the word's features do not depend on how much room noise came before it: only the word fills the mean
    longer = causal_mfcc(np.concatenate([quiet, quiet, word]), **GATED)
    assert np.allclose(longer[:, -10:], gated[:, -10:], atol=1e-3)
    ungated = dict(NORMALISED)
    assert not np.allclose(causal_mfcc(np.concatenate([quiet, quiet, word]), **ungated)[:, -10:],
                           causal_mfcc(audio, **ungated)[:, -10:], atol=1e-3)
    _assert_chunked_equals_whole_and_causal(GATED, audio, gated)


def _prior_and_word(prior_frames: float = 4.0):
    """(the gated options with a prior, the prior, audio: room noise then a word, relative C[t] [20, frames],
    L[t], R[t]) for checking the prior's equation; whole hops, so that fitting the length changes nothing."""
    word = _speech_like(3072, seed=9)
    quiet = np.random.default_rng(1).normal(0, 1e-4, 2048).astype(np.float32)
    audio = np.concatenate([quiet, word])
    relative = causal_mfcc(audio, **dict(CAUSAL, peak_range_db=60.0))
    front = CausalMfcc(**CAUSAL)
    stream = np.concatenate([np.zeros(128, np.float64), audio.astype(np.float64)])
    frames = np.stack([stream[t * 128: t * 128 + 256] for t in range(len(audio) // 128)])
    frame_loudest = (10 * np.log10(np.maximum((np.abs(np.fft.rfft(frames * front.window, axis=1)) ** 2)
                                              @ front.mel_filters.T, 1e-10))).max(axis=1)
    prior = np.linspace(-40.0, 5.0, 20)
    options = dict(GATED, mean_prior_frames=prior_frames, mean_prior=tuple(prior))
    return options, prior, audio, relative, frame_loudest, np.maximum.accumulate(frame_loudest)


def test_prior_running_mean_follows_its_equation_and_keeps_the_onset():
    options, prior, audio, relative, frame_loudest, loudest = _prior_and_word(prior_frames=4.0)
    with_prior = CausalMfcc(**options).push(audio).T
    without = causal_mfcc(audio, **GATED)
    decay, start, restarts = 1 - 1 / 8, -np.inf, []
    total, weight = 4.0 * prior, 4.0
    for t in range(relative.shape[1]):
        if loudest[t] > start + 20.0:  # starts over from the prior, not from nothing
            total, weight, start = 4.0 * prior, 4.0, loudest[t]
            restarts.append(t)
        if frame_loudest[t] >= loudest[t] - 20.0:
            total, weight = decay * total + relative[:, t], decay * weight + 1
        assert np.allclose(with_prior[:, t], relative[:, t] - total / weight, atol=1e-4), t
    onset = restarts[-1]
    assert onset >= 2048 // 128 - 1
    # without the prior the word's first frame is normalised by itself: exactly zero; with it, not
    assert np.abs(without[:, onset]).max() < 1e-4
    assert np.abs(with_prior[:, onset]).max() > 1.0
    chunked = _assert_chunked_equals_whole_and_causal(options, audio, with_prior)
    chunked.reset()  # a reset stream starts from the prior again
    assert np.array_equal(chunked.push(audio).T, with_prior)


def test_the_prior_is_the_mean_of_the_sound_of_the_training_recordings():
    from scnn.features.causal import fit_mean_prior

    options, _, audio, relative, frame_loudest, loudest = _prior_and_word()
    config = feature_config("causal_prior", peak_range_db=60.0, num_frames=len(audio) // 128)
    heard = frame_loudest >= frame_loudest.max() - config.mean_gate_db
    assert 0 < heard.sum() < len(heard) and not heard[:2048 // 128 - 1].any()  # the room noise is left out
    fitted = np.array(fit_mean_prior([audio], config))
    assert fitted.shape == (20,) and np.allclose(fitted, relative[:, heard].mean(axis=1), atol=1e-4)
    other = _speech_like(4000, seed=3)  # several recordings: the mean over all their heard frames
    both = fit_mean_prior([audio, other], config)
    assert not np.allclose(both, fitted, atol=1e-3)
    with pytest.raises(ValueError, match="no frame to fit the prior on"):
        fit_mean_prior([], config)


def test_torch_front_end_computes_the_causal_features():
    from dataclasses import replace

    from scnn.features.causal import fit_mean_prior
    from scnn.features.torch_mfcc import TorchMFCC, fitted_batch

    for preset in ("causal", "causal_norm", "causal_gated", "causal_prior"):
        config = feature_config(preset)
        if config.mean_prior_frames:
            config = replace(config, mean_prior=fit_mean_prior([_speech_like(6000, seed=1)], config))
        audio = [torch.from_numpy(_speech_like(n, seed=n)) for n in (3000, 5000, 9000)]
        ours = TorchMFCC(config)(fitted_batch(audio, config))
        reference = np.stack([waveform_to_mfcc(a.numpy(), config) for a in audio])
        assert ours.shape == reference.shape == (3, 20, 64)
        # float32 STFT against float64 numpy; the floor and the log keep the differences small
        assert np.abs(ours.numpy() - reference).max() < 2e-2, preset


def test_causal_normalisation_options_are_checked():
    with pytest.raises(ValueError, match="peak_range_db must be None or a positive number of dB"):
        feature_config("causal", peak_range_db=-3.0)
    with pytest.raises(ValueError, match="running_mean_frames must be 0 .off. or a time constant of at least 1"):
        feature_config("causal", running_mean_frames=0.5)
    with pytest.raises(ValueError, match="need representation 'causal_mfcc', not 'mfcc'"):
        feature_config("default", running_mean_frames=8.0)
    with pytest.raises(ValueError, match="mean_gate_db must be None or a positive number of dB"):
        feature_config("causal_norm", mean_gate_db=0.0)
    with pytest.raises(ValueError, match="mean_gate_db gates the running mean .* needs peak_range_db and "
                                         "running_mean_frames"):
        feature_config("causal", mean_gate_db=20.0)
    with pytest.raises(ValueError, match="mean_prior_frames must be 0 .off. or a positive weight in frames"):
        feature_config("causal_norm", mean_prior_frames=-1.0)
    with pytest.raises(ValueError, match="mean_prior_frames is the prior of the running mean: it needs "
                                         "running_mean_frames"):
        feature_config("causal", peak_range_db=80.0, mean_prior_frames=8.0)
    with pytest.raises(ValueError, match=r"mean_prior must hold n_mfcc \(20\) values; got 3"):
        feature_config("causal_prior", mean_prior=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="mean_prior must be a list of numbers"):
        feature_config("causal_prior", mean_prior=["a"] * 20)
    with pytest.raises(ValueError, match="mean_prior_frames=2.0 needs mean_prior, 20 values"):
        waveform_to_mfcc(_speech_like(3000), feature_config("causal_prior"))  # not fitted yet
    assert feature_config("causal_prior", mean_prior=list(range(20))).mean_prior == tuple(float(v) for v in range(20))


def test_the_streamer_applies_enrolled_speaker_statistics_as_the_offline_pass_does(tmp_path):
    from scnn.stream import Streamer, enrolment_statistics, offline_evidence

    model, features, normalizer = _streaming_setup("causal_norm")
    rows = features.num_rows or features.n_mfcc
    stats = (np.linspace(-1, 1, rows).astype(np.float32), np.full(rows, 2.0, np.float32))
    audio = np.concatenate([_speech_like(5000, seed=5), np.zeros(2000, np.float32)])
    evidence, _ = Streamer(model, features, normalizer, speaker_stats=stats).run(audio, chunk_ms=7.0)
    assert np.allclose(evidence, offline_evidence(model, features, normalizer, audio, stats), atol=1e-4)
    assert not np.allclose(evidence, offline_evidence(model, features, normalizer, audio), atol=1e-3)
    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"enrol_{seed}.wav")
        soundfile.write(paths[-1], _speech_like(4000, seed=seed), 8000)
    mean, scale = enrolment_statistics(paths, features, "mean_var")
    raw = np.stack([waveform_to_mfcc(_speech_like(4000, seed=s), features) for s in range(3)])
    assert np.allclose(mean, raw.mean(axis=(0, 2)), atol=1e-4) and mean.shape == scale.shape == (rows,)
