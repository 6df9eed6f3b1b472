"""Feature normalisation: per utterance (optional) and then per coefficient, fitted on the training split.

Per-utterance normalisation is cepstral mean (and variance) normalisation, CMN / CMVN: each
recording's every coefficient row has its own mean over frames subtracted (and is divided by its
own standard deviation over frames). A constant channel or a speaker's vocal tract adds a roughly
constant offset to each cepstral coefficient, which CMN removes; it is the usual speaker and
channel normalisation of speaker-independent keyword spotting. It needs nothing fitted, so the
same operation applies at training, validation, test and under noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

UTTERANCE_NORMS = ("none", "mean", "mean_var")
_FLOOR = 1e-6  # rows whose spread is below this (zero-padded rows) are left unscaled


def utterance_normalize(features: np.ndarray | torch.Tensor, mode: str):
    """Per-utterance normalisation of ``features [..., rows, frames]`` (numpy or torch, float).

    mode: "none" (identity), "mean" (subtract each row's mean over frames: CMN) or "mean_var"
    (also divide by each row's standard deviation over frames, floored: CMVN). Returns the same
    type and shape.
    """
    if mode not in UTTERANCE_NORMS:
        raise ValueError(f"utterance normalisation must be one of {', '.join(UTTERANCE_NORMS)}; got {mode!r}")
    if mode == "none":
        return features
    if isinstance(features, torch.Tensor):
        centred = features - features.mean(dim=-1, keepdim=True)
        if mode == "mean":
            return centred
        spread = centred.square().mean(dim=-1, keepdim=True).sqrt()
        return centred / torch.where(spread < _FLOOR, torch.ones_like(spread), spread)
    centred = features - features.mean(axis=-1, keepdims=True)
    if mode == "mean":
        return centred
    spread = centred.std(axis=-1, keepdims=True)
    return centred / np.where(spread < _FLOOR, 1.0, spread)


@dataclass
class Normalizer:
    """Optional per-utterance normalisation (``utterance``), then per-coefficient standardisation
    ``(x - mean[row]) / std[row]``.

    mean, std: float32 ``[rows]``, fitted on the training split only (after the per-utterance
    step). A disabled normaliser (``enabled=False``) skips the standardisation; ``utterance`` applies
    either way.
    """

    mean: np.ndarray
    std: np.ndarray
    enabled: bool = True
    utterance: str = "none"

    def __post_init__(self):
        if self.utterance not in UTTERANCE_NORMS:
            raise ValueError(f"utterance normalisation must be one of {', '.join(UTTERANCE_NORMS)}; "
                             f"got {self.utterance!r}")

    @classmethod
    def fit(cls, train_features: np.ndarray, enabled: bool = True, utterance: str = "none") -> "Normalizer":
        """Fit on ``[N, rows, frames]`` training features (statistics over samples and frames)."""
        train_features = utterance_normalize(train_features, utterance)
        mean = train_features.mean(axis=(0, 2)).astype(np.float32)
        std = train_features.std(axis=(0, 2)).astype(np.float32)
        std = np.where(std < _FLOOR, 1.0, std).astype(np.float32)  # zero-padded rows stay zero
        return cls(mean, std, enabled, utterance)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """``features [N, rows, frames]`` -> normalised float32, same shape."""
        features = utterance_normalize(features, self.utterance)
        if not self.enabled:
            return features.astype(np.float32)
        return ((features - self.mean[:, None]) / self.std[:, None]).astype(np.float32)

    def torch(self, features: torch.Tensor) -> torch.Tensor:
        """The same for a torch batch ``[B, rows, frames]`` (features computed per training batch)."""
        features = utterance_normalize(features, self.utterance)
        if not self.enabled:
            return features
        mean = torch.from_numpy(self.mean).to(features.device)[:, None]
        std = torch.from_numpy(self.std).to(features.device)[:, None]
        return (features - mean) / std

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "enabled": self.enabled,
                "utterance": self.utterance}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        """From :meth:`state_dict`; checkpoints written before ``utterance`` existed had none."""
        return cls(np.asarray(state["mean"], np.float32), np.asarray(state["std"], np.float32), bool(state["enabled"]),
                   state.get("utterance", "none"))
