"""Per-coefficient feature normalisation, fitted on the training split only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Normalizer:
    """Per-coefficient standardisation: ``(x - mean[row]) / std[row]``.

    mean, std: float32 ``[rows]``. Fitted on the training split only; a
    disabled normaliser (``enabled=False``) is the identity.
    """

    mean: np.ndarray
    std: np.ndarray
    enabled: bool = True

    @classmethod
    def fit(cls, train_features: np.ndarray, enabled: bool = True) -> "Normalizer":
        """Fit on ``[N, rows, frames]`` training features (statistics over samples and frames)."""
        mean = train_features.mean(axis=(0, 2)).astype(np.float32)
        std = train_features.std(axis=(0, 2)).astype(np.float32)
        std = np.where(std < 1e-6, 1.0, std).astype(np.float32)  # zero-padded rows stay zero
        return cls(mean, std, enabled)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return features.astype(np.float32)
        return ((features - self.mean[:, None]) / self.std[:, None]).astype(np.float32)

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "enabled": self.enabled}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        return cls(np.asarray(state["mean"], np.float32), np.asarray(state["std"], np.float32), bool(state["enabled"]))

