"""From a data config to normalised feature tensors: list, split, extract, normalise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scnn.data.registry import dataset_listing, default_cache_dir
from scnn.data.splits import Split, split_recordings
from scnn.features.mfcc import FeatureConfig, extract_features, feature_config
from scnn.features.normalize import Normalizer


@dataclass
class DataConfig:
    """Where the audio comes from and how it is split.

    data_dir: folder of wavs (None: $SCNN_DATA_DIR, else the per-user cache, downloaded if absent).
    dataset: a registered dataset (:mod:`scnn.data.registry`): "fsdd" ({digit}_{speaker}_{index}.wav)
        or "folders" (root/<label>/*.wav); the first version called this field ``layout``.
    split: "official" | "speaker" | "random"; holdout_speaker for "speaker"; test_fraction for "random".
    val_fraction: share of train carved out (stratified, seeded by split_seed) for validation.
    feature_preset + feature_overrides: see :mod:`scnn.features`.
    cache_dir: feature cache (None: <user cache>/features); skip_bad: leave unreadable files out.
    train_per_class: keep only the first N training recordings of each class (0: all), for quick runs.
    """

    data_dir: str | None = None
    dataset: str = "fsdd"
    split: str = "official"
    holdout_speaker: str = "theo"
    test_fraction: float = 0.1
    val_fraction: float = 0.1
    split_seed: int = 0
    feature_preset: str = "default"
    feature_overrides: dict = field(default_factory=dict)
    cache_dir: str | None = None
    skip_bad: bool = False
    download: bool = True
    train_per_class: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> "DataConfig":
        """Rebuild from a saved dict; a first-version checkpoint's ``layout`` is this ``dataset``."""
        values = dict(values)
        if "layout" in values:
            values["dataset"] = values.pop("layout")
        return cls(**values)

    def features(self) -> FeatureConfig:
        return feature_config(self.feature_preset, **self.feature_overrides)



@dataclass
class PreparedData:
    """Normalised features ``x`` [N, 1, rows, frames] float32 and labels ``y`` [N] per split."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    class_names: list[str]
    normalizer: Normalizer
    feature_config: FeatureConfig
    data_dir: str
    skipped: list = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])



def prepare_data(config: DataConfig, normalizer: Normalizer | None = None, progress: bool = True) -> PreparedData:
    """Find the audio, split it, extract (or load cached) MFCCs and normalise them.

    The normaliser is fitted on the training part only, unless one is given
    (evaluation of a checkpoint reuses the one it was trained with).
    """
    features_config = config.features()
    listing = dataset_listing(config)
    root, recordings, class_names = listing.root, listing.recordings, listing.class_names
    split = split_recordings(
        recordings, split=config.split, val_fraction=config.val_fraction, seed=config.split_seed,
        holdout_speaker=config.holdout_speaker, test_fraction=config.test_fraction,
    )
    if config.train_per_class:
        split = Split(train=_first_per_class(split.train, config.train_per_class), val=split.val, test=split.test)
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir() / "features"
    everything = split.train + split.val + split.test
    extracted = extract_features([r.path for r in everything], features_config, cache_dir=cache_dir,
                                 skip_bad=config.skip_bad, progress=progress)
    row_of = {path: row for row, path in enumerate(extracted.paths)}

    def tensors(part):
        kept = [r for r in part if str(r.path) in row_of]
        x = extracted.features[[row_of[str(r.path)] for r in kept]] if kept else np.zeros((0, *features_config.shape), np.float32)
        y = torch.tensor([r.label for r in kept], dtype=torch.long)
        return x, y

    train_x, train_y = tensors(split.train)
    if len(train_y) == 0:
        raise ValueError(f"no training recordings left in {root} after the {config.split!r} split"
                         + (" and --skip-bad" if config.skip_bad else ""))
    if normalizer is None:
        normalizer = Normalizer.fit(train_x, enabled=features_config.normalize)
    parts = [tensors(split.train), tensors(split.val), tensors(split.test)]
    parts = [(torch.from_numpy(normalizer(x)).unsqueeze(1), y) for x, y in parts]
    return PreparedData(*parts, class_names=class_names, normalizer=normalizer, feature_config=features_config,
                        data_dir=str(root), skipped=listing.skipped + extracted.skipped)



def _first_per_class(recordings: list, limit: int) -> list:
    counts: dict[int, int] = {}
    kept = []
    for recording in recordings:
        counts[recording.label] = counts.get(recording.label, 0) + 1
        if counts[recording.label] <= limit:
            kept.append(recording)
    return kept



def checkpoint_data(checkpoint: dict, overrides: dict | None = None, progress: bool = False) -> PreparedData:
    """The data a checkpoint was trained on: same dataset, split, features and normaliser.

    overrides: DataConfig fields to change (``{"data_dir": ...}`` where the recordings are now,
    another ``split``, ``train_per_class`` for quick runs); None values are ignored.
    """
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    config = DataConfig.from_dict({**checkpoint["data_config"], **overrides})
    return prepare_data(config, normalizer=Normalizer.from_state_dict(checkpoint["normalizer"]), progress=progress)
