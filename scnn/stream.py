"""Streaming inference: audio in chunks in, class evidence per frame out, as the audio arrives.

A :class:`Streamer` holds a frame-by-frame model (the "frames" encoding: :mod:`scnn.models.streaming`),
the causal front end (:class:`scnn.features.causal.CausalMfcc`) and the training split's
normaliser. Each :meth:`Streamer.push` of samples (any length; 16 ms = 128 samples at 8 kHz is one
frame) computes the frames those samples complete, normalises them per coefficient, and advances
every neuron one step per frame (``model.step``; the neurons keep their state between pushes).
The evidence of frame t is the readout membrane ``[classes]`` after it, available once the audio
up to ``(t + 1) * hop`` samples has arrived; it equals :func:`offline_evidence`, the model's
multi-step pass over the same audio (tested). A model trained on isolated words starts each
word from rest; ``reset_after_silence_s`` resets it likewise once a silence has lasted that long
(``scnn stream`` does after 0.3 s).

:func:`detect` splits a long recording into words: frames louder than ``level_db`` below the
loudest frame heard so far (and above an absolute floor) are speech; speech runs closer than
``min_gap_s`` merge, runs shorter than ``min_duration_s`` are dropped, and each word gets the
class whose softmax evidence, summed from its start to ``tail_s`` after its end, is largest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from scnn.data.prepare import checkpoint_features
from scnn.features.causal import CausalMfcc
from scnn.features.mfcc import FeatureConfig
from scnn.features.normalize import Normalizer
from scnn.features.speaker_norm import apply_speaker_norm, speaker_statistics
from scnn.models.frame_runner import FrameRunner
from scnn.neurons.base import reset_net


def _check_streamable(model: nn.Module, features: FeatureConfig) -> None:
    encoding = getattr(getattr(model, "config", None), "encoding", None)
    if encoding != "frames" or not hasattr(model, "step"):
        raise ValueError(f"model {type(model).__name__} takes encoding {encoding!r}; streaming needs a model fed "
                         "frame by frame (encoding 'frames', e.g. the preset 'streaming')")
    if features.representation != "causal_mfcc":
        raise ValueError(f"features {features.representation!r} need the whole recording; streaming needs "
                         "representation 'causal_mfcc' (data.feature_preset=causal)")


class Streamer:
    """Feed audio in chunks, get class evidence per frame (see the module docstring).

    model: a frame-by-frame model; features: its causal feature config; normalizer: the
    training split's; class_names: for printing (default "0", "1", ...).
    reset_after_silence_s: reset every neuron once silence has lasted this long (None: never, and
    the evidence equals :func:`offline_evidence`); level_db, floor_db: :func:`speech_frames`' test.
    engine: "numpy" runs the model through :class:`scnn.models.frame_runner.FrameRunner` (the same
    equations in a few numpy operations per layer, membranes equal to float32 rounding), "torch"
    through ``model.step``; "auto" (default) takes numpy when every neuron of the model has a frame step.
    """

    def __init__(self, model: nn.Module, features: FeatureConfig, normalizer: Normalizer,
                 class_names: list[str] | None = None, reset_after_silence_s: float | None = None,
                 level_db: float = 30.0, floor_db: float = -60.0, engine: str = "auto",
                 speaker_stats: tuple[np.ndarray, np.ndarray] | None = None):
        _check_streamable(model, features)
        if engine not in ("auto", "numpy", "torch"):
            raise ValueError(f"engine must be 'auto', 'numpy' or 'torch', got {engine!r}")
        if reset_after_silence_s is not None and reset_after_silence_s <= 0:
            raise ValueError(f"reset_after_silence_s must be positive or None, got {reset_after_silence_s}")
        # A model trained on isolated words starts each from rest; in a long stream it may carry the
        # last word through the silence. With reset_after_silence_s, every neuron is reset once the
        # silence (speech_frames' test, causal) has lasted that long, as before each training word.
        self.reset_frames = (None if reset_after_silence_s is None else
                             max(1, int(round(reset_after_silence_s * features.sample_rate / features.hop_length))))
        self.level_db, self.floor_db = level_db, floor_db
        self.model = model.eval()
        self.features = features
        self.normalizer = normalizer
        self.speaker_stats = None if speaker_stats is None else tuple(np.asarray(a, np.float32) for a in speaker_stats)
        self.front_end = CausalMfcc.from_config(features)
        self.class_names = class_names or [str(i) for i in range(model.num_classes)]
        self.runner = None
        if engine != "torch":
            try:
                self.runner = FrameRunner(self.model)
            except ValueError:
                if engine == "numpy":
                    raise
        self.engine = "numpy" if self.runner is not None else "torch"
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | Path, enrolment: Sequence[str | Path] | None = None,
                        **options) -> "Streamer":
        """The model, features, normaliser and class names of a checkpoint; options as the constructor's.
        enrolment: recordings of the listener, for a checkpoint trained with ``data.speaker_norm`` (their
        statistics stand in for the speaker's, :func:`enrolment_statistics`)."""
        from scnn.train.evaluate import load_trained_model

        model, checkpoint = load_trained_model(path)
        features = checkpoint_features(checkpoint)
        speaker_norm = checkpoint.get("data_config", {}).get("speaker_norm", "none")
        if speaker_norm != "none" and options.get("speaker_stats") is None:
            if not enrolment:
                raise ValueError(f"checkpoint {path} was trained with data.speaker_norm={speaker_norm}: give the "
                                 "listener's enrolment recordings (enrolment=[wav, ...], scnn stream --enrol WAV ...)")
            options["speaker_stats"] = enrolment_statistics(enrolment, features, speaker_norm)
        return cls(model, features, Normalizer.from_state_dict(checkpoint["normalizer"]), checkpoint.get("class_names"),
                   **options)

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @property
    def frame_seconds(self) -> float:
        """Seconds between frames (one hop)."""
        return self.features.hop_length / self.features.sample_rate

    def reset(self) -> None:
        """Start a new stream: empty front end, every neuron at rest."""
        self.front_end.reset()
        self._reset_model()
        self.frames_done = 0
        self.loudest_db, self.silent_frames = -np.inf, 0
        self.reset_at: list[int] = []  # frames at which the neurons were reset (reset_after_silence_s)

    @torch.no_grad()
    def push(self, samples: np.ndarray) -> np.ndarray:
        """Samples ``[n]`` (float, at ``sample_rate``) -> evidence ``[k, classes]`` of the k frames they completed."""
        mfcc, levels = self.front_end.push_frames(samples)
        self.last_levels_db = levels
        evidence = np.zeros((len(mfcc), len(self.class_names)), dtype=np.float32)
        rows = self.features.num_rows or self.features.n_mfcc
        for index, frame in enumerate(mfcc):
            self.loudest_db = max(self.loudest_db, float(levels[index]))
            speech = levels[index] > self.loudest_db - self.level_db and levels[index] > self.floor_db
            self.silent_frames = 0 if speech else self.silent_frames + 1
            if self.reset_frames is not None and self.silent_frames == self.reset_frames:
                self._reset_model()
                self.reset_at.append(self.frames_done + index)
            if len(frame) < rows:
                frame = np.pad(frame, (0, rows - len(frame)))
            column = frame[:, None]  # [rows, 1 frame]
            if self.speaker_stats is not None:  # speaker-level CMN / CMVN with the enrolled statistics
                column = apply_speaker_norm(column, *self.speaker_stats)
            normalised = self.normalizer(column)[:, 0]
            if self.runner is not None:
                evidence[index] = self.runner.step(normalised)
            else:
                evidence[index] = self.model.step(torch.from_numpy(normalised).view(1, 1, rows)).logits[0].numpy()
        self.frames_done += len(mfcc)
        return evidence

    def _reset_model(self) -> None:
        if self.runner is not None:
            self.runner.reset()
        reset_net(self.model)

    def run(self, waveform: np.ndarray, chunk_ms: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
        """A whole waveform pushed in chunks of ``chunk_ms`` from a fresh stream:
        (evidence ``[frames, classes]``, frame level in dBFS ``[frames]``)."""
        self.reset()
        chunk = max(1, int(round(chunk_ms * self.sample_rate / 1000)))
        evidence, levels = [], []
        for start in range(0, len(waveform), chunk):
            evidence.append(self.push(waveform[start:start + chunk]))
            levels.append(self.last_levels_db)
        return np.concatenate(evidence), np.concatenate(levels)


def enrolment_statistics(paths: Sequence[str | Path], features: FeatureConfig, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """One listener's speaker mean and scale ``([rows], [rows])`` from recordings of them (labels unused):
    the statistics :mod:`scnn.features.speaker_norm` takes from a speaker's recordings in training."""
    from scnn.features.mfcc import load_audio, waveform_to_mfcc

    raw = np.stack([waveform_to_mfcc(load_audio(path, features.sample_rate), features) for path in paths])
    mean, scale = speaker_statistics(raw, ["listener"] * len(raw), [str(p) for p in paths], mode)
    return mean[0], scale[0]


@torch.no_grad()
def offline_evidence(model: nn.Module, features: FeatureConfig, normalizer: Normalizer,
                     waveform: np.ndarray, speaker_stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The multi-step pass over a whole waveform: readout membrane per frame ``[frames, classes]``.
    speaker_stats: the Streamer's (speaker mean and scale ``[rows]``), for a model trained with data.speaker_norm."""
    _check_streamable(model, features)
    mfcc = CausalMfcc.from_config(features).push(waveform).T
    rows = features.num_rows or features.n_mfcc
    mfcc = np.pad(mfcc, ((0, rows - len(mfcc)), (0, 0)))
    if speaker_stats is not None:
        mfcc = apply_speaker_norm(mfcc, *speaker_stats).astype(np.float32)
    x = torch.from_numpy(normalizer(mfcc))[None, None]
    return model.eval()(x).membrane[:, 0].numpy()


@dataclass
class Detection:
    """A word heard: from ``start_s`` to ``end_s`` (seconds), its class and the mean softmax evidence."""

    start_s: float
    end_s: float
    label: int
    name: str
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def speech_frames(levels_db: np.ndarray, level_db: float = 30.0, floor_db: float = -60.0) -> np.ndarray:
    """Boolean ``[frames]``: louder than ``level_db`` below the loudest frame so far and than ``floor_db`` (causal)."""
    loudest = np.maximum.accumulate(levels_db)
    return (levels_db > loudest - level_db) & (levels_db > floor_db)


def detect(evidence: np.ndarray, levels_db: np.ndarray, frame_seconds: float, class_names: list[str],
           level_db: float = 30.0, floor_db: float = -60.0, min_gap_s: float = 0.2, min_duration_s: float = 0.1,
           tail_s: float = 0.2) -> list[Detection]:
    """Words in a stream from its per-frame evidence ``[frames, classes]`` and levels (module docstring)."""
    if len(evidence) != len(levels_db):
        raise ValueError(f"evidence has {len(evidence)} frames but levels {len(levels_db)}")
    speech = speech_frames(levels_db, level_db, floor_db)
    runs, start = [], None
    for index, active in enumerate(np.append(speech, False)):
        if active and start is None:
            start = index
        elif not active and start is not None:
            runs.append([start, index])
            start = None
    merged = []
    for run in runs:
        if merged and (run[0] - merged[-1][1]) * frame_seconds < min_gap_s:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    shifted = evidence - evidence.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    tail = int(round(tail_s / frame_seconds))
    detections = []
    for first, end in merged:
        if (end - first) * frame_seconds < min_duration_s:
            continue
        scores = probabilities[first:min(len(evidence), end + tail)].mean(axis=0)
        label = int(scores.argmax())
        detections.append(Detection(first * frame_seconds, end * frame_seconds, label, class_names[label],
                                    float(scores[label])))
    return detections
