"""From a data config to normalised feature tensors: list, split, extract, normalise."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from scnn.data.recordings import scan_manifest
from scnn.data.registry import Recording, dataset_listing, default_cache_dir
from scnn.data.splits import SPLITS, Split, assign_groups, compile_group_pattern, split_recordings
from scnn.features.cache import ShardedFeatures, cached_features, mapped_rows
from scnn.features.mfcc import FEATURE_PRESETS, AudioFileError, FeatureConfig, feature_config
from scnn.io import describe_problems
from scnn.features.normalize import UTTERANCE_NORMS, Normalizer
from scnn.features.speaker_norm import SPEAKER_NORMS, apply_speaker_norm, speaker_normalize, speaker_statistics
from scnn.validate import check_choice, check_number


@dataclass
class DataConfig:
    """Where the audio comes from and how it is split.

    data_dir: folder of wavs (None: $SCNN_DATA_DIR, else the per-user cache, downloaded if absent).
    dataset: a registered dataset (:mod:`scnn.data.registry`): "fsdd" ({digit}_{speaker}_{index}.wav)
        or "folders" (root/<label>/*.wav); the first version called this field ``layout``.
    split: "official" | "speaker" | "random" | "group" (:func:`scnn.data.splits.split_recordings`);
        holdout_speaker for "speaker" (one name, or several as "a,b"); test_fraction for "random"
        (share of each class) and "group" (share of the speakers, at least one).
    val_fraction: share of train carved out (stratified, seeded by split_seed) for validation.
    val_speakers ("a,b") or num_val_speakers (a seeded choice): validation is every file of these
        training speakers instead, so train, validation and test share no speaker.
    group_pattern: where the speaker (group) comes from instead of the dataset's own metadata: a regular
        expression matched against each file name with a named group, ``(?P<group>[a-z]+)_\\d+\\.wav``;
        or group_manifest: a CSV file with columns path and speaker (paths relative to the CSV).
    label_pattern, manifest: dataset "recordings" (:mod:`scnn.data.recordings`): a regular expression with
        named groups label (and optionally speaker) matched against file names under data_dir, or a CSV
        file of path, label and optionally speaker; neither: class folders data_dir/<label>/*.wav.
    feature_preset + feature_overrides: see :mod:`scnn.features`.
    cache_dir: feature cache (None: <user cache>/features); skip_bad: leave bad files out (unreadable,
        empty, not audio, NaN samples, a name that carries no label) and report them, instead of
        stopping with one error that names them.
    train_per_class: keep only the first N training recordings of each class (0: all), for quick runs.
    utterance_norm: per-utterance feature normalisation before the per-coefficient one: "none", "mean"
        (cepstral mean normalisation) or "mean_var" (and variance), :mod:`scnn.features.normalize`.
    speaker_norm: speaker-level CMN / CMVN before both ("none", "mean", "mean_var"): each recording's
        features minus its speaker's mean over all of that speaker's recordings in the same part (train,
        validation, test; labels unused), :mod:`scnn.features.speaker_norm`; speaker_norm_recordings: how
        many recordings per speaker give the statistics (0: all; K: an enrolment of K, seeded by split_seed).
    extra_train: a CSV manifest (path, label, optionally speaker; labels are the dataset's class names)
        of recordings added to the training split only, after the split (never validation or test):
        another corpus, or synthetic voices (:mod:`scnn.data.synthetic`).
    """

    data_dir: str | None = None
    dataset: str = "fsdd"
    split: str = "official"
    holdout_speaker: str = "theo"
    val_speakers: str = ""
    num_val_speakers: int = 0
    group_pattern: str | None = None
    group_manifest: str | None = None
    label_pattern: str | None = None
    manifest: str | None = None
    test_fraction: float = 0.1
    val_fraction: float = 0.1
    split_seed: int = 0
    feature_preset: str = "default"
    feature_overrides: dict = field(default_factory=dict)
    cache_dir: str | None = None
    skip_bad: bool = False
    download: bool = True
    train_per_class: int = 0
    utterance_norm: str = "none"
    speaker_norm: str = "none"
    speaker_norm_recordings: int = 0
    extra_train: str | None = None

    def __post_init__(self):
        check_choice("data.split", self.split, SPLITS)
        check_number("data.test_fraction", self.test_fraction, 0.0, 1.0, exclusive_minimum=True)
        if self.test_fraction >= 1.0:
            raise ValueError(f"data.test_fraction must be < 1; got {self.test_fraction}")
        check_number("data.val_fraction", self.val_fraction, 0.0, 1.0)
        if self.val_fraction >= 1.0:
            raise ValueError(f"data.val_fraction must be < 1; got {self.val_fraction}")
        check_number("data.split_seed", self.split_seed, integer=True)
        check_choice("data.feature_preset", self.feature_preset, FEATURE_PRESETS)
        check_number("data.train_per_class", self.train_per_class, 0, integer=True)
        check_number("data.num_val_speakers", self.num_val_speakers, 0, integer=True)
        check_choice("data.utterance_norm", self.utterance_norm, UTTERANCE_NORMS)
        check_choice("data.speaker_norm", self.speaker_norm, SPEAKER_NORMS)
        check_number("data.speaker_norm_recordings", self.speaker_norm_recordings, 0, integer=True)
        if self.val_speakers and self.num_val_speakers:
            raise ValueError("data.val_speakers and data.num_val_speakers exclude each other: name the validation "
                             "speakers or say how many to choose")
        if self.group_pattern and self.group_manifest:
            raise ValueError("data.group_pattern and data.group_manifest exclude each other")
        if self.group_pattern:
            compile_group_pattern(self.group_pattern)
        if self.label_pattern:
            from scnn.data.recordings import compile_label_pattern

            compile_label_pattern(self.label_pattern)

    @classmethod
    def from_dict(cls, values: dict) -> "DataConfig":
        """Rebuild from a saved dict; a first-version checkpoint's ``layout`` is this ``dataset``."""
        values = dict(values)
        if "layout" in values:
            values["dataset"] = values.pop("layout")
        return cls(**values)

    def features(self) -> FeatureConfig:
        return feature_config(self.feature_preset, **self.feature_overrides)



class DataPart(NamedTuple):
    """One held-out part of a :class:`PreparedData` ("val" or "test"): normalised features ``x``
    ``[N, 1, rows, frames]``, labels ``y`` ``[N]``, and each row's file and speaker."""

    x: torch.Tensor
    y: torch.Tensor
    files: list
    speakers: list


@dataclass
class PreparedData:
    """Normalised features ``x`` [N, 1, rows, frames] float32 and labels ``y`` [N] per split.

    skipped: (path, reason) of the files left out with ``skip_bad``. test_files: the path of each
    test row (``test[0][i]`` came from ``test_files[i]``). test_set: :func:`describe_test_set` of
    the test split (empty where the data came from elsewhere, as in tests). train_waveforms: each
    training row's recording as read (float32 ``[samples_i]``, before the silence trim), for waveform
    augmentation (noise goes in before the trim, as the noise evaluation adds it); None unless asked for.
    """

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    class_names: list[str]
    normalizer: Normalizer
    feature_config: FeatureConfig
    data_dir: str
    skipped: list = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    test_set: dict = field(default_factory=dict)
    train_waveforms: list | None = None  # N_train recordings [samples_i] as read (keep_waveforms=True only)
    train_files: list[str] = field(default_factory=list)  # what train[0][i] came from (Recording.key)
    val_files: list[str] = field(default_factory=list)  # what val[0][i] came from
    train_speakers: list = field(default_factory=list)  # each training row's speaker (group), None if unknown
    val_speakers: list = field(default_factory=list)  # each validation row's speaker
    test_speakers: list = field(default_factory=list)  # each test row's speaker
    # data.speaker_norm: each training row's speaker mean and scale ([N_train, rows] float32, scnn.features.
    # speaker_norm), for features computed per batch from augmented waveforms; None without it.
    train_speaker_stats: tuple | None = None
    speaker_norm: tuple = ("none", 0, 0)  # data.speaker_norm, speaker_norm_recordings, split_seed

    def part(self, name: str) -> DataPart:
        """The validation ("val") or test ("test") part; ValueError for any other name."""
        if name == "test":
            return DataPart(*self.test, self.test_files, self.test_speakers)
        if name == "val":
            return DataPart(*self.val, self.val_files, self.val_speakers)
        raise ValueError(f"part must be 'test' or 'val', got {name!r}")

    def normalise(self, raw: np.ndarray, part: str) -> torch.Tensor:
        """Features ``[N, rows, frames]`` extracted anew from ``part``'s recordings ("val" or "test", in the
        order of ``val_files`` / ``test_files``: noisy copies, say) -> ``[N, 1, rows, frames]`` normalised as
        this data's were, the speaker statistics taken from ``raw`` itself."""
        files, speakers = self.part(part)[2:]
        if len(raw) != len(files):
            raise ValueError(f"normalise: {len(raw)} feature rows for {len(files)} {part} recordings")
        mode, recordings, seed = self.speaker_norm
        return torch.from_numpy(self.normalizer(speaker_normalize(raw, speakers, files, mode, recordings, seed))).unsqueeze(1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])



def prepare_data(config: DataConfig, normalizer: Normalizer | None = None, progress: bool = True,
                 keep_waveforms: bool = False, mean_prior: tuple | list | None = None) -> PreparedData:
    """Find the audio, split it, extract (or load cached) MFCCs and normalise them.

    keep_waveforms: also keep the training recordings' fitted waveforms (``train_waveforms``), for
    waveform augmentation with features computed per batch.
    mean_prior: the causal front end's fitted prior (``FeatureConfig.mean_prior``) of a checkpoint; when
    the features ask for one (``mean_prior_frames``) and none is given, it is fitted on the training split
    (:func:`scnn.features.causal.fit_mean_prior`) and returned in ``feature_config``.

    The normaliser is fitted on the training part only, unless one is given
    (evaluation of a checkpoint reuses the one it was trained with).
    """
    features_config = config.features()
    listing = dataset_listing(config)
    root, recordings, class_names = listing.root, listing.recordings, listing.class_names
    recordings = assign_groups(recordings, config.group_pattern, config.group_manifest)
    split = split_recordings(
        recordings, split=config.split, val_fraction=config.val_fraction, seed=config.split_seed,
        holdout_speaker=config.holdout_speaker, test_fraction=config.test_fraction,
        val_speakers=config.val_speakers, num_val_speakers=config.num_val_speakers,
    )
    if config.train_per_class:
        split = Split(train=_first_per_class(split.train, config.train_per_class), val=split.val, test=split.test)
    if config.extra_train:
        split = Split(train=split.train + extra_training_recordings(config.extra_train, class_names), val=split.val,
                      test=split.test)
    if features_config.mean_prior_frames and features_config.mean_prior is None:
        if mean_prior is None:
            mean_prior = _fitted_mean_prior([r.key for r in split.train], features_config)
        features_config = replace(features_config, mean_prior=mean_prior)
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir() / "features"
    everything = split.train + split.val + split.test
    # Every bad file is collected first (skip_bad=True), so that one error names the misnamed and
    # the unreadable files together instead of one kind per run.
    if listing.extract is not None:  # samples that are not audio files (spike events): the dataset's own front end
        extracted = listing.extract(everything, features_config)
    else:
        # In path order, so that another split of the same files (a CV fold, another holdout speaker)
        # finds the same cache entry.
        # Lists of more than 4,096 files go through the sharded, memory-mapped cache (scnn.features.cache).
        extracted = cached_features(sorted(str(r.path) for r in everything), features_config, cache_dir=cache_dir,
                                    skip_bad=True, progress=progress)
    problems = listing.skipped + extracted.skipped
    # Named relative to the data folder, which the message states once.
    shown = [(os.path.relpath(path, root), reason) for path, reason in problems]
    if problems and not config.skip_bad:
        raise AudioFileError(f"{root}: cannot use {describe_problems(shown)} "
                             "(use --skip-bad to leave such files out)", problems)
    if problems:
        warnings.warn(f"{root}: skip_bad left out {describe_problems(shown)}", stacklevel=2)
    row_of = {path: row for row, path in enumerate(extracted.paths)}

    if config.speaker_norm != "none" and isinstance(extracted.features, ShardedFeatures):
        raise ValueError(f"{root}: data.speaker_norm is not available for datasets of more than 4,096 files "
                         "(features in the sharded cache); use data.utterance_norm")

    train, val, test = ([r for r in part if r.key in row_of] for part in (split.train, split.val, split.test))

    def tensors(recordings):
        """(features [N, rows, frames], after speaker-level CMN when asked; labels [N]; the speaker statistics
        of the speaker-level CMN, or None)."""
        x = extracted.features[[row_of[r.key] for r in recordings]] if recordings else \
            np.zeros((0, *features_config.shape), np.float32)
        y = torch.tensor([r.label for r in recordings], dtype=torch.long)
        statistics = None
        if config.speaker_norm != "none" and recordings:  # over this part's recordings of each speaker
            statistics = speaker_statistics(x, [r.speaker for r in recordings], [r.key for r in recordings],
                                            config.speaker_norm, config.speaker_norm_recordings, config.split_seed)
            x = apply_speaker_norm(x, *statistics).astype(np.float32)
        return x, y, statistics

    train_x, train_y, train_stats = tensors(train)
    if len(train_y) == 0:
        raise ValueError(f"no training recordings left in {root} after the {config.split!r} split"
                         + (" and --skip-bad" if config.skip_bad else ""))
    if normalizer is None:
        normalizer = Normalizer.fit(train_x, enabled=features_config.normalize, utterance=config.utterance_norm)
    if isinstance(extracted.features, ShardedFeatures):
        # 100k-file sets: each split normalised once into a memory-mapped file beside the shards, so training
        # reads its batches from the page cache instead of holding every feature in memory.
        del train_x
        parts = [(mapped_rows(extracted.features, [row_of[r.key] for r in part], normalizer),
                  torch.tensor([r.label for r in part], dtype=torch.long)) for part in (train, val, test)]
    else:
        parts = [(train_x, train_y), tensors(val)[:2], tensors(test)[:2]]
        parts = [(torch.from_numpy(normalizer(x)).unsqueeze(1), y) for x, y in parts]
    test_files = [r.key for r in test]
    train_waveforms = train_speaker_stats = None
    if keep_waveforms:
        from scnn.features.torch_mfcc import load_recordings

        train_waveforms = load_recordings([r.key for r in train], features_config)
        if train_stats is not None:  # the clean features' statistics, for the per-batch augmented features
            train_speaker_stats = tuple(torch.from_numpy(a) for a in train_stats)
    return PreparedData(*parts, class_names=class_names, normalizer=normalizer, feature_config=features_config,
                        data_dir=str(root), skipped=problems, test_files=test_files,
                        test_set=describe_test_set(test_files, root, extracted.digests),
                        train_waveforms=train_waveforms, train_files=[r.key for r in train],
                        val_files=[r.key for r in val], train_speakers=[r.speaker for r in train],
                        val_speakers=[r.speaker for r in val], test_speakers=[r.speaker for r in test],
                        train_speaker_stats=train_speaker_stats,
                        speaker_norm=(config.speaker_norm, config.speaker_norm_recordings, config.split_seed))


def _fitted_mean_prior(paths: list[str], features_config: FeatureConfig) -> tuple[float, ...]:
    """:func:`scnn.features.causal.fit_mean_prior` over the training files that can be read (the
    unreadable ones are named by the feature extraction that follows)."""
    from scnn.features.causal import fit_mean_prior
    from scnn.features.mfcc import load_audio
    from scnn.features.torch_mfcc import fitted_waveform

    waveforms = []
    for path in paths:
        try:
            waveforms.append(fitted_waveform(load_audio(path, features_config.sample_rate), features_config))
        except Exception:  # noqa: BLE001 - reported with every other bad file by cached_features
            continue
    return fit_mean_prior(waveforms, features_config)


def _saved_mean_prior(checkpoint: dict) -> list | None:
    """The causal front end's fitted prior a training run saved in the checkpoint's ``feature_config``."""
    return (checkpoint.get("feature_config") or {}).get("mean_prior")


def checkpoint_features(checkpoint: dict) -> FeatureConfig:
    """The feature config a checkpoint was trained with: its data config's, with the fitted prior of the
    causal front end (``mean_prior``) the training run saved."""
    features = DataConfig.from_dict(checkpoint["data_config"]).features()
    prior = _saved_mean_prior(checkpoint)
    return replace(features, mean_prior=prior) if prior is not None and features.mean_prior_frames else features


def extra_training_recordings(manifest: str | Path, class_names: list[str]) -> list[Recording]:
    """The recordings of ``data.extra_train``'s manifest (path, label, optionally speaker), labelled by
    their index in ``class_names``. ValueError naming every row whose label is not a class or whose
    file is missing (the first few, then a count)."""
    listing = scan_manifest(manifest)  # the generic dataset's reader: missing files and empty labels in skipped
    index = {name: number for number, name in enumerate(class_names)}
    problems = list(listing.skipped) + [
        (str(r.path), f"label {listing.class_names[r.label]!r} is not one of the classes {', '.join(class_names)}")
        for r in listing.recordings if listing.class_names[r.label] not in index]
    if problems:
        raise ValueError(f"data.extra_train {manifest}: cannot use {describe_problems(sorted(problems))}")
    return [Recording(r.path, index[listing.class_names[r.label]], r.speaker) for r in listing.recordings]


def describe_test_set(paths: list[str], root: str | Path, digests: dict[str, str | None]) -> dict:
    """What a checkpoint records of its test split, so that an evaluation can tell whether it sees the same data.

    Returns ``{"root", "files": [path relative to root], "sha256": [SHA-256 of each file's bytes],
    "digest": SHA-256 over the sorted (file, sha256) pairs}``; files are relative so that a moved
    data folder still compares equal.
    """
    files = [Path(os.path.relpath(path, root)).as_posix() for path in paths]
    sha256 = [digests.get(path) or "unreadable" for path in paths]
    digest = hashlib.sha256("".join(f"{name}\t{value}\n" for name, value in sorted(zip(files, sha256))).encode())
    return {"root": str(root), "files": files, "sha256": sha256, "digest": digest.hexdigest()}


def compare_test_sets(recorded: dict, current: dict, shown: int = 3) -> list[str]:
    """Warnings (one line each) where the ``current`` test set differs from the ``recorded`` one
    (both :func:`describe_test_set`): files missing, files added, files whose content changed."""
    if not recorded or not current or recorded.get("digest") == current.get("digest"):
        return []
    then, now = dict(zip(recorded["files"], recorded["sha256"])), dict(zip(current["files"], current["sha256"]))

    def some(names):
        return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")

    missing = sorted(set(then) - set(now))
    added = sorted(set(now) - set(then))
    changed = sorted(name for name in set(then) & set(now) if then[name] != now[name])
    lines = []
    if missing:
        lines.append(f"{len(missing)} of the {len(then)} test recordings the checkpoint recorded are missing "
                     f"from {current['root']}: {some(missing)}; the accuracy is over the {len(now)} present")
    if added:
        lines.append(f"{len(added)} test recordings are not among those the checkpoint recorded: {some(added)}")
    if changed:
        lines.append(f"{len(changed)} test recordings differ in content from those the checkpoint recorded: "
                     f"{some(changed)}")
    return lines



def _first_per_class(recordings: list, limit: int) -> list:
    counts: dict[int, int] = {}
    kept = []
    for recording in recordings:
        counts[recording.label] = counts.get(recording.label, 0) + 1
        if counts[recording.label] <= limit:
            kept.append(recording)
    return kept



def checkpoint_data(checkpoint: dict, overrides: dict | None = None, progress: bool = False,
                    keep_waveforms: bool = False) -> PreparedData:
    """The data a checkpoint was trained on: same dataset, split, features and normaliser.

    overrides: DataConfig fields to change (``{"data_dir": ...}`` where the recordings are now,
    another ``split``, ``train_per_class`` for quick runs); None values are ignored.
    keep_waveforms: keep the training recordings too (:func:`prepare_data`), to train on.
    """
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    config = DataConfig.from_dict({**checkpoint["data_config"], **overrides})
    return prepare_data(config, normalizer=Normalizer.from_state_dict(checkpoint["normalizer"]), progress=progress,
                        mean_prior=_saved_mean_prior(checkpoint), keep_waveforms=keep_waveforms)
