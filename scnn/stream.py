"""Streaming inference: audio in chunks in, class evidence per frame out, as the audio arrives.

A :class:`Streamer` holds a frame-by-frame model (the "frames" encoding: :mod:`scnn.models.streaming`),
the causal front end (:class:`scnn.features.causal.CausalMfcc`) and the training split's
normaliser. Each :meth:`Streamer.push` of samples (any length; 16 ms = 128 samples at 8 kHz is one
frame) computes the frames those samples complete, normalises them per coefficient, and advances
every neuron one step per frame (``model.step``; the neurons keep their state between pushes).
The evidence of frame t is the readout membrane ``[classes]`` after it, available once the audio
up to ``(t + 1) * hop`` samples has arrived; it equals :func:`offline_evidence`, the model's
multi-step pass over the same audio (tested).

:func:`detect` splits a long recording into words: frames louder than ``level_db`` below the
loudest frame heard so far (and above an absolute floor) are speech; speech runs closer than
``min_gap_s`` merge, runs shorter than ``min_duration_s`` are dropped, and each word gets the
class whose softmax evidence, summed from its start to ``tail_s`` after its end, is largest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scnn.data.prepare import DataConfig
from scnn.features.causal import CausalMfcc, causal_mfcc
from scnn.features.mfcc import FeatureConfig
from scnn.features.normalize import Normalizer
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
    """

    def __init__(self, model: nn.Module, features: FeatureConfig, normalizer: Normalizer,
                 class_names: list[str] | None = None):
        _check_streamable(model, features)
        self.model = model.eval()
        self.features = features
        self.normalizer = normalizer
        self.front_end = CausalMfcc(features.sample_rate, features.n_fft, features.hop_length, features.n_mels,
                                    features.n_mfcc)
        self.class_names = class_names or [str(i) for i in range(model.num_classes)]
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Streamer":
        from scnn.train.evaluate import load_trained_model

        model, checkpoint = load_trained_model(path)
        features = DataConfig.from_dict(checkpoint["data_config"]).features()
        return cls(model, features, Normalizer.from_state_dict(checkpoint["normalizer"]), checkpoint.get("class_names"))

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
        reset_net(self.model)
        self.frames_done = 0

    @torch.no_grad()
    def push(self, samples: np.ndarray) -> np.ndarray:
        """Samples ``[n]`` (float, at ``sample_rate``) -> evidence ``[k, classes]`` of the k frames they completed."""
        mfcc, levels = self.front_end.push_frames(samples)
        self.last_levels_db = levels
        evidence = np.zeros((len(mfcc), len(self.class_names)), dtype=np.float32)
        rows = self.features.num_rows or self.features.n_mfcc
        for index, frame in enumerate(mfcc):
            frame = np.pad(frame, (0, rows - len(frame)))
            normalised = self.normalizer(frame[:, None])[:, 0]
            output = self.model.step(torch.from_numpy(normalised).view(1, 1, rows))
            evidence[index] = output.logits[0].numpy()
        self.frames_done += len(mfcc)
        return evidence

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


@torch.no_grad()
def offline_evidence(model: nn.Module, features: FeatureConfig, normalizer: Normalizer,
                     waveform: np.ndarray) -> np.ndarray:
    """The multi-step pass over a whole waveform: readout membrane per frame ``[frames, classes]``."""
    _check_streamable(model, features)
    mfcc = causal_mfcc(waveform, features.sample_rate, features.n_fft, features.hop_length, features.n_mels,
                       features.n_mfcc)
    rows = features.num_rows or features.n_mfcc
    mfcc = np.pad(mfcc, ((0, rows - len(mfcc)), (0, 0)))
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
