"""Speaker-level cepstral mean (and variance) normalisation: CMN / CMVN over all of a speaker's recordings.

Per-utterance CMN (:mod:`scnn.features.normalize`) takes each recording's own mean over its frames; for
a half-second word that mean carries the word too, and removing it costs accuracy. Speaker-level CMN
takes the mean over every frame of every recording of one speaker (Kaldi's ``apply-cmvn --utt2spk``):
the offset that the speaker's vocal tract and microphone add to each cepstral coefficient goes, the
word stays. Each part of a split (train, validation, test) uses its own speakers' recordings, labels
unused: a test speaker's statistics come from its own (unlabelled) test recordings, as a device would
gather them from what it hears. ``recordings=K`` keeps only K recordings per speaker for the statistics
(an enrolment of K words), chosen by a seeded draw over the speaker's file names.

Shapes: features ``[N, rows, frames]``; statistics per row ``[N, rows]`` (each recording gets its
speaker's), so that the same two arrays normalise a precomputed split and a batch computed on the fly.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

SPEAKER_NORMS = ("none", "mean", "mean_var")
_FLOOR = 1e-6  # coefficients whose spread is below this (zero-padded rows) are not scaled


def speaker_statistics(features: np.ndarray, speakers: Sequence[str | None], keys: Sequence[str], mode: str,
                       recordings: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each recording's speaker mean and scale over frames, ``([N, rows], [N, rows])`` float32.

    features: ``[N, rows, frames]`` as extracted (before any other normalisation); speakers: each
    row's speaker (group); keys: each row's file name, which orders the enrolment draw; mode: "mean"
    (scale 1) or "mean_var" (scale = the speaker's standard deviation, floored); recordings: how many of
    each speaker's recordings give the statistics (0: all); seed: the enrolment draw's.
    """
    if mode not in SPEAKER_NORMS or mode == "none":
        raise ValueError(f"data.speaker_norm must be 'mean' or 'mean_var' here, got {mode!r}")
    if not len(features) == len(speakers) == len(keys):
        raise ValueError(f"speaker statistics: {len(features)} recordings, {len(speakers)} speakers, {len(keys)} names")
    unknown = [key for key, speaker in zip(keys, speakers) if speaker is None]
    if unknown:
        raise ValueError(f"data.speaker_norm needs every recording's speaker; {len(unknown)} have none, "
                         f"for example {unknown[0]} (give data.group_pattern or data.group_manifest)")
    rows_of = defaultdict(list)
    for row, speaker in enumerate(speakers):
        rows_of[speaker].append(row)
    mean = np.zeros(features.shape[:2], np.float32)
    scale = np.ones(features.shape[:2], np.float32)
    for speaker, rows in rows_of.items():
        chosen = _enrolment(rows, keys, speaker, recordings, seed)
        frames = features[chosen].transpose(1, 0, 2).reshape(features.shape[1], -1)  # [rows, K * frames]
        mean[rows] = frames.mean(axis=1)
        if mode == "mean_var":
            spread = frames.std(axis=1)
            scale[rows] = np.where(spread < _FLOOR, 1.0, spread)
    return mean, scale


def _enrolment(rows: list[int], keys: Sequence[str], speaker: str, recordings: int, seed: int) -> list[int]:
    """All of ``rows``, or ``recordings`` of them drawn by a generator seeded by ``seed`` and the speaker."""
    if recordings <= 0 or recordings >= len(rows):
        return rows
    ordered = sorted(rows, key=lambda row: keys[row])
    generator = np.random.default_rng([seed, zlib.crc32(str(speaker).encode())])
    return sorted(ordered[i] for i in generator.choice(len(ordered), size=recordings, replace=False))


def apply_speaker_norm(features: np.ndarray | torch.Tensor, mean, scale):
    """``(features - mean) / scale`` with ``features [..., rows, frames]`` and ``mean``, ``scale`` ``[..., rows]``
    (``[N, rows]`` for a batch, ``[rows]`` for one recording; numpy or torch, matching)."""
    return (features - mean[..., None]) / scale[..., None]


def speaker_normalize(features: np.ndarray, speakers: Sequence[str | None], keys: Sequence[str], mode: str,
                      recordings: int = 0, seed: int = 0) -> np.ndarray:
    """``features [N, rows, frames]`` normalised by their speakers' statistics (identity for mode "none")."""
    if mode == "none" or len(features) == 0:
        return features
    mean, scale = speaker_statistics(features, speakers, keys, mode, recordings, seed)
    return apply_speaker_norm(features, mean, scale).astype(np.float32)
