"""MFCC features for spoken-word audio, cached on disk.

Pipeline for one file (all shapes per sample):

    wav --(soundfile, mono, resample)--> waveform [samples] at ``sample_rate`` Hz
        --(optional silence trim, top_db)--> waveform
        --(fit="center": centre pad/crop the waveform to num_frames hops)--> waveform
        --(librosa MFCC)--> [n_mfcc, frames]
        --(fit="end": zero pad/crop the matrix at the end, as the reference code)--> [n_mfcc, num_frames]
        --(zero rows up to num_rows)--> [num_rows, num_frames]

A whole list of files becomes a float32 array ``[N, num_rows, num_frames]``,
cached under a key that hashes the file list (names, sizes, mtimes) and every
feature parameter. Per-coefficient normalisation is a separate step
(:class:`Normalizer`), fitted on the training split only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

FEATURE_CACHE_VERSION = 2  # bump when the extraction code or the cache layout changes


LEVELS = ("none", "peak", "rms")


class AudioFileError(ValueError):
    """A file could not be turned into features; the message names it and why."""


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter that changes the features (all are part of the cache key).

    sample_rate: Hz the audio is resampled to.
    n_mfcc: MFCC coefficients kept (rows before ``num_rows`` padding).
    n_fft: STFT window in samples; hop_length: STFT hop in samples.
    n_mels: mel bands the MFCC is computed from.
    top_db: silence trim threshold in dB below peak; None keeps the whole file.
    num_frames: fixed number of frames (columns) of every feature matrix.
    fit: "center" pads/crops the waveform symmetrically so the MFCC has exactly
        ``num_frames`` frames; "end" computes the MFCC of the whole file and then
        zero-pads or crops its columns at the end (the reference code's way).
    num_rows: zero-pad the coefficient axis up to this many rows (None: n_mfcc).
    normalize: fit per-coefficient mean/std on the training split.
    representation: "mfcc", or "waveform" for raw audio: the trimmed waveform centre-padded
        or cropped to ``num_frames`` samples, one row (the SSM baseline's raw-audio input).
    level: loudness of each recording after the trim: "none" keeps it, "peak" scales the
        largest |sample| to 1, "rms" scales the root-mean-square to 1 (an automatic gain
        control; raw-audio models otherwise see each speaker's and session's level).
    """

    sample_rate: int = 8000
    n_mfcc: int = 32
    n_fft: int = 256
    hop_length: int = 128
    n_mels: int = 64
    top_db: float | None = 30.0
    num_frames: int = 32
    fit: str = "center"
    num_rows: int | None = None
    normalize: bool = True
    representation: str = "mfcc"
    level: str = "none"

    def __post_init__(self):
        positive = ("sample_rate", "n_mfcc", "n_fft", "hop_length", "n_mels", "num_frames")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"FeatureConfig.{name} must be positive, got {getattr(self, name)}")
        if self.representation not in ("mfcc", "waveform"):
            raise ValueError(f"FeatureConfig.representation must be 'mfcc' or 'waveform', got {self.representation!r}")
        if self.level not in LEVELS:
            raise ValueError(f"FeatureConfig.level must be one of {LEVELS}, got {self.level!r}")
        if self.fit not in ("center", "end"):
            raise ValueError(f"FeatureConfig.fit must be 'center' or 'end', got {self.fit!r}")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"FeatureConfig.n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        if self.num_rows is not None and self.num_rows < self.n_mfcc:
            raise ValueError(f"FeatureConfig.num_rows ({self.num_rows}) must be >= n_mfcc ({self.n_mfcc})")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, frames) of one feature matrix: (1, samples) for the waveform."""
        if self.representation == "waveform":
            return (1, self.num_frames)
        return (self.num_rows or self.n_mfcc, self.num_frames)


FEATURE_PRESETS: dict[str, FeatureConfig] = {
    # The reference code: 8 kHz, 16 MFCCs, hop 512, librosa's default n_fft (2048)
    # and n_mels (128), no trim, matrix zero-padded to 32x32, no normalisation.
    "paper": FeatureConfig(
        sample_rate=8000, n_mfcc=16, n_fft=2048, hop_length=512, n_mels=128,
        top_db=None, num_frames=32, fit="end", num_rows=32, normalize=False,
    ),
    # Chosen by measurement (README, "Choosing the default features"): 32 MFCCs from 64 mel
    # bands, 32 ms windows every 16 ms, silence trimmed at 30 dB, 32 frames (0.51 s) centred,
    # normalised per coefficient.
    "default": FeatureConfig(),
    # Raw audio for the SSM baseline: 8,000 samples (1 s at 8 kHz) centred after trimming, each
    # recording scaled to unit RMS (+0.67 points for the 48-wide raw-audio SSM, docs/ssm_raw_grid.md).
    "waveform": FeatureConfig(representation="waveform", num_frames=8000, n_mfcc=1, n_mels=1, level="rms"),
}


def feature_config(preset: str = "default", **overrides) -> FeatureConfig:
    """A preset by name, with keyword overrides (``feature_config("paper", top_db=30)``)."""
    if preset not in FEATURE_PRESETS:
        raise ValueError(f"unknown feature preset {preset!r}; choose one of {sorted(FEATURE_PRESETS)}")
    return replace(FEATURE_PRESETS[preset], **overrides)


# --------------------------------------------------------------------------- audio


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read one file as a mono float32 waveform ``[samples]`` at ``sample_rate`` Hz.

    Stereo is averaged to mono and other rates are resampled, each with a warning.
    Unreadable, empty, truncated or non-audio files raise :class:`AudioFileError`
    naming the file and the reason.
    """
    import soundfile

    path = Path(path)
    try:
        audio, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        reason = "empty file" if path.exists() and path.stat().st_size == 0 else str(error)
        raise AudioFileError(f"{path}: cannot read audio ({reason})") from error
    if audio.shape[0] == 0:
        raise AudioFileError(f"{path}: no audio samples (empty or truncated file)")
    if not np.all(np.isfinite(audio)):
        raise AudioFileError(f"{path}: audio contains NaN or infinite samples")
    if audio.shape[1] > 1:
        warnings.warn(f"{path}: {audio.shape[1]} channels mixed down to mono", stacklevel=2)
    waveform = audio.mean(axis=1)
    if file_rate != sample_rate:
        import librosa

        warnings.warn(f"{path}: resampled from {file_rate} Hz to {sample_rate} Hz", stacklevel=2)
        waveform = librosa.resample(waveform, orig_sr=file_rate, target_sr=sample_rate)
    return waveform.astype(np.float32)


def _fit_length(values: np.ndarray, length: int, axis: int = -1) -> np.ndarray:
    """Centre-pad with zeros or centre-crop ``values`` along ``axis`` to ``length``."""
    current = values.shape[axis]
    if current >= length:
        start = (current - length) // 2
        return np.take(values, np.arange(start, start + length), axis=axis)
    before = (length - current) // 2
    widths = [(0, 0)] * values.ndim
    widths[axis] = (before, length - current - before)
    return np.pad(values, widths)


def normalize_level(waveform: np.ndarray, level: str) -> np.ndarray:
    """``waveform [samples]`` scaled to unit peak or unit RMS (``level``: none, peak, rms).

    A silent (all-zero) waveform is returned unchanged.
    """
    if level == "none":
        return waveform
    size = np.abs(waveform).max() if level == "peak" else np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))
    return waveform if size == 0 else (waveform / size).astype(np.float32)


def waveform_to_mfcc(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """MFCC matrix ``[rows, num_frames]`` (float32) of one mono waveform ``[samples]``
    (or the fitted waveform itself, ``[1, num_frames]``, for ``representation="waveform"``)."""
    import librosa

    if config.top_db is not None and waveform.size > 0:
        waveform, _ = librosa.effects.trim(waveform, top_db=config.top_db)
    waveform = normalize_level(waveform, config.level)
    if config.representation == "waveform":
        return _fit_length(waveform, config.num_frames)[None, :].astype(np.float32)
    if config.fit == "center":
        # librosa's centred STFT gives 1 + samples // hop frames.
        waveform = _fit_length(waveform, (config.num_frames - 1) * config.hop_length)
    mfcc = librosa.feature.mfcc(
        y=waveform, sr=config.sample_rate, n_mfcc=config.n_mfcc, n_fft=config.n_fft,
        hop_length=config.hop_length, n_mels=config.n_mels,
    )
    if config.fit == "end":
        mfcc = mfcc[:, : config.num_frames]
        mfcc = np.pad(mfcc, ((0, 0), (0, config.num_frames - mfcc.shape[1])))
    rows = config.num_rows or config.n_mfcc
    mfcc = np.pad(mfcc, ((0, rows - mfcc.shape[0]), (0, 0)))
    assert mfcc.shape == config.shape, (mfcc.shape, config.shape)
    return mfcc.astype(np.float32)


def file_to_mfcc(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """MFCC matrix ``[rows, num_frames]`` of one audio file."""
    waveform = load_audio(path, config.sample_rate)
    if waveform.size < 2:
        raise AudioFileError(f"{path}: only {waveform.size} sample(s), too short for features")
    return waveform_to_mfcc(waveform, config)


def _file_to_mfcc_or_error(args: tuple[str, FeatureConfig]):
    """Worker: returns (features, None) or (None, error message); warnings are passed back."""
    path, config = args
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return file_to_mfcc(path, config), None, [str(w.message) for w in caught]
        except AudioFileError as error:
            return None, str(error), [str(w.message) for w in caught]


def _init_worker():
    # Each extraction process gets one core's worth of threads (no oversubscription).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["NUMBA_NUM_THREADS"] = "1"


# --------------------------------------------------------------------------- cache


def cache_key(paths: Sequence[str | Path], config: FeatureConfig) -> str:
    """SHA-256 over the file list (name, size, mtime) and every feature parameter."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": FEATURE_CACHE_VERSION, "config": asdict(config)}, sort_keys=True).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


@dataclass
class FeatureSet:
    """Features of a list of files: ``features`` [N, rows, frames] float32, row i from ``paths[i]``.

    ``skipped`` lists (path, reason) of files left out with ``skip_bad=True``.
    """

    features: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False


def extract_features(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> FeatureSet:
    """MFCC features of every file, loaded from the cache when nothing changed.

    workers: extraction processes (default: all cores); progress: show a tqdm bar.
    A bad file raises :class:`AudioFileError` naming it, unless ``skip_bad``, which
    leaves it out and records it in ``FeatureSet.skipped``. The cache file is
    written to a temporary name and renamed, so an interrupted run leaves no
    half-written cache.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("extract_features: the file list is empty")
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"mfcc-{cache_key(paths, config)}-{'skip' if skip_bad else 'strict'}.npz"
        if cache_file.exists():
            # The cache stores absolute paths (its key does too); give back the caller's spelling.
            as_given = {os.path.abspath(p): p for p in paths}
            with np.load(cache_file, allow_pickle=False) as stored:
                skipped = [(as_given[path], reason) for path, reason in
                           (row.split("\t", 1) for row in stored["skipped"].tolist())]
                kept = [as_given[path] for path in stored["paths"].tolist()]
                return FeatureSet(stored["features"], kept, skipped, from_cache=True)

    workers = workers or os.cpu_count() or 1
    jobs = [(p, config) for p in paths]
    if workers > 1 and len(paths) > 50:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            results = list(_progress(pool.map(_file_to_mfcc_or_error, jobs, chunksize=32), len(jobs), progress))
    else:
        results = list(_progress(map(_file_to_mfcc_or_error, jobs), len(jobs), progress))

    features, kept, skipped = [], [], []
    _warn_summarised([message for _, _, messages in results for message in messages])
    for path, (matrix, error, _) in zip(paths, results):
        if error is None:
            features.append(matrix)
            kept.append(path)
        elif skip_bad:
            skipped.append((path, error))
        else:
            raise AudioFileError(f"{error} (use --skip-bad to leave such files out)")
    if not features:
        raise AudioFileError(f"none of the {len(paths)} files could be read; first error: {skipped[0][1]}")
    result = FeatureSet(np.stack(features), kept, skipped)

    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".tmp.npz", delete=False) as handle:
            np.savez(handle, features=result.features, paths=np.array([os.path.abspath(p) for p in kept]),
                     skipped=np.array([f"{os.path.abspath(p)}\t{reason}" for p, reason in skipped], dtype=str))
        os.replace(handle.name, cache_file)
    return result


def _warn_summarised(messages: list[str], shown: int = 5) -> None:
    """Re-raise the workers' warnings: the first few in full, the rest as a count."""
    for message in messages[:shown]:
        warnings.warn(message, stacklevel=3)
    if len(messages) > shown:
        warnings.warn(f"... and {len(messages) - shown} more warnings like these", stacklevel=3)


def _progress(iterable, total: int, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="MFCC", unit="file")


# --------------------------------------------------------------------------- normalisation


