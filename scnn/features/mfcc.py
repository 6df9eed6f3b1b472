"""MFCC features for spoken-word audio, cached on disk.

Pipeline for one file (all shapes per sample):

    wav --(soundfile, mono, resample)--> waveform [samples] at ``sample_rate`` Hz
        --(optional silence trim, top_db)--> waveform
        --(fit="center": centre pad/crop the waveform to num_frames hops)--> waveform
        --(librosa MFCC)--> [n_mfcc, frames]
        --(fit="end": zero pad/crop the matrix at the end, as the reference code)--> [n_mfcc, num_frames]
        --(zero rows up to num_rows)--> [num_rows, num_frames]

A whole list of files becomes a float32 array ``[N, num_rows, num_frames]``,
cached under a key that hashes every file's path and bytes (SHA-256) and every
feature parameter (costs and checks: the notes above :func:`content_digest`).
Per-coefficient normalisation is a separate step (:class:`Normalizer`), fitted on
the training split only.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from scnn.io import atomic_write, describe_problems

FEATURE_CACHE_VERSION = 3  # bump when the extraction code or the cache layout changes (3: keyed by content)


LEVELS = ("none", "peak", "rms")
REPRESENTATIONS = ("mfcc", "logmel", "waveform", "causal_mfcc", "events")


class AudioFileError(ValueError):
    """Files could not be turned into features; the message names them and why.

    ``problems``: every (path, reason) pair, where the message shows only the first few.
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.problems = list(problems)


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
    representation: "mfcc", "logmel" (the MFCC's log-mel spectrogram before its DCT: ``n_mels`` rows in dB,
        floored 80 dB below the recording's peak; n_mfcc unused), or "waveform" for raw audio: the trimmed waveform centre-padded
        or cropped to ``num_frames`` samples, one row (the SSM baseline's raw-audio input), or
        "causal_mfcc": frame t computed from the audio up to its end only, as a stream can
        (:mod:`scnn.features.causal`; the waveform centre-padded or cropped to num_frames hops).
    level: loudness of each recording after the trim: "none" keeps it, "peak" scales the
        largest |sample| to 1, "rms" scales the root-mean-square to 1 (an automatic gain
        control; raw-audio models otherwise see each speaker's and session's level).
        "events" for spike-event datasets (SHD, SSC): spike counts ``[num_rows, num_frames]``, each
        row ``700 / num_rows`` neighbouring channels, each frame ``hop_length / sample_rate`` seconds
        (sample_rate is then the event clock, in ticks per second); the dataset bins them
        (:func:`scnn.data.heidelberg.bin_events`), the MFCC fields are unused.
    peak_range_db, running_mean_frames, mean_gate_db: the causal normalisations of "causal_mfcc" (a
        running level reference floored that many dB down; a running cepstral mean with that time
        constant in frames; that mean fed only by frames within that many dB of the loudest so far),
        equations in :mod:`scnn.features.causal`.
    dynamic_range_db: the log-mel spectrogram of "mfcc" and "logmel" is floored this many dB below the
        recording's loudest bin (librosa's ``power_to_db(top_db=...)``; 80 is librosa's default). A smaller
        range clips quiet bins, where additive noise shows first (docs/robustness.md).
    mean_prior_frames, mean_prior: the running mean starts (and starts over) from the prior ``mean_prior``
        (``n_mfcc`` values) worth ``mean_prior_frames`` frames (:mod:`scnn.features.causal`); the prior is
        fitted on the training split by :func:`scnn.data.prepare_data` when left None.
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
    peak_range_db: float | None = None
    running_mean_frames: float = 0.0
    mean_gate_db: float | None = None
    mean_prior_frames: float = 0.0
    mean_prior: tuple[float, ...] | None = None
    dynamic_range_db: float = 80.0

    def __post_init__(self):
        if self.mean_prior is not None:  # a list when read back from JSON or YAML
            try:
                object.__setattr__(self, "mean_prior", tuple(float(value) for value in self.mean_prior))
            except (TypeError, ValueError):
                raise ValueError(f"FeatureConfig.mean_prior must be a list of numbers; got {self.mean_prior!r}") from None
            if len(self.mean_prior) != self.n_mfcc:
                raise ValueError(f"FeatureConfig.mean_prior must hold n_mfcc ({self.n_mfcc}) values; "
                                 f"got {len(self.mean_prior)}")
        positive = ("sample_rate", "n_mfcc", "n_fft", "hop_length", "n_mels", "num_frames")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"FeatureConfig.{name} must be positive, got {getattr(self, name)}")
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"FeatureConfig.representation must be one of {REPRESENTATIONS}, "
                             f"got {self.representation!r}")
        if self.representation == "causal_mfcc" and (self.top_db is not None or self.level != "none"):
            raise ValueError("FeatureConfig.top_db must be None and level 'none' for representation 'causal_mfcc' "
                             "(trimming silence and scaling the level need the whole recording)")
        if self.representation != "causal_mfcc" and (self.peak_range_db is not None or self.running_mean_frames
                                                     or self.mean_gate_db is not None or self.mean_prior_frames):
            raise ValueError("FeatureConfig.peak_range_db, running_mean_frames, mean_gate_db and mean_prior_frames "
                             "are causal normalisations: they need "
                             f"representation 'causal_mfcc', not {self.representation!r}")
        from scnn.features.causal import check_causal_normalisation

        check_causal_normalisation(self.peak_range_db, self.running_mean_frames, self.mean_gate_db,
                                   self.mean_prior_frames)
        if not self.dynamic_range_db > 0:
            raise ValueError(f"FeatureConfig.dynamic_range_db must be > 0 (dB), got {self.dynamic_range_db}")
        if self.dynamic_range_db != 80.0 and self.representation not in ("mfcc", "logmel"):
            raise ValueError("FeatureConfig.dynamic_range_db applies to representation 'mfcc' or 'logmel' "
                             f"(causal MFCCs have peak_range_db), not {self.representation!r}")
        if self.representation == "events" and self.num_rows is None:
            raise ValueError("FeatureConfig.num_rows (channel rows) is required for representation='events'")
        if self.level not in LEVELS:
            raise ValueError(f"FeatureConfig.level must be one of {LEVELS}, got {self.level!r}")
        if self.fit not in ("center", "end"):
            raise ValueError(f"FeatureConfig.fit must be 'center' or 'end', got {self.fit!r}")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"FeatureConfig.n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        bands = self.n_mels if self.representation == "logmel" else self.n_mfcc
        if self.num_rows is not None and self.num_rows < bands:
            name = "n_mels" if self.representation == "logmel" else "n_mfcc"
            raise ValueError(f"FeatureConfig.num_rows ({self.num_rows}) must be >= {name} ({bands})")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, frames) of one feature matrix: (1, samples) for the waveform."""
        if self.representation == "waveform":
            return (1, self.num_frames)
        if self.representation == "logmel":
            return (self.num_rows or self.n_mels, self.num_frames)
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
    # Streaming: 20 causal MFCCs from 40 mel bands, 32 ms windows every 16 ms, 64 frames (1.02 s),
    # no trim (scnn.features.causal): what a stream computes frame by frame.
    "causal": FeatureConfig(representation="causal_mfcc", n_mfcc=20, n_mels=40, top_db=None, num_frames=64),
    # The same with both causal normalisations: the log-mel below the loudest bin so far, floored 80 dB
    # below it (as the default front end's clip below the recording's peak), and a running cepstral mean
    # over about 0.5 s (32 frames) subtracted.
    "causal_norm": FeatureConfig(representation="causal_mfcc", n_mfcc=20, n_mels=40, top_db=None, num_frames=64,
                                 peak_range_db=80.0, running_mean_frames=32.0),
    # The same with the running mean gated to the sound (frames within 20 dB of the loudest so far; it
    # starts over when the level rises 20 dB above where it started): the silence before a word no longer
    # fills the mean (scnn.features.causal, mean_gate_db).
    "causal_gated": FeatureConfig(representation="causal_mfcc", n_mfcc=20, n_mels=40, top_db=None, num_frames=64,
                                  peak_range_db=80.0, running_mean_frames=32.0, mean_gate_db=20.0),
    # The same with the mean starting (over) from a prior worth 2 frames, the training speakers' mean speech
    # cepstrum (fitted by prepare_data), instead of from the word's first frame (scnn.features.causal);
    # 2 frames over 8 chosen on leave-one-speaker-out validation (README, "Listening as the audio arrives").
    "causal_prior": FeatureConfig(representation="causal_mfcc", n_mfcc=20, n_mels=40, top_db=None, num_frames=64,
                                  peak_range_db=80.0, running_mean_frames=32.0, mean_gate_db=20.0,
                                  mean_prior_frames=2.0),
    # Spike events of SHD / SSC: 100 frames of 14 ms (1.4 s, as Zenke's SHD tutorial and Cramer et al.
    # 2020 bin them), the 700 channels summed in fives to 140 rows (float32 [140, 100] is 56 kB a
    # sample: SHD's 8,156 training samples hold 0.46 GB); spike counts, not normalised.
    "events": FeatureConfig(representation="events", sample_rate=1000, hop_length=14, num_frames=100,
                            num_rows=140, n_mfcc=1, n_mels=1, top_db=None, normalize=False),
}


def check_feature_overrides(overrides: dict, where: str = "feature {key}") -> dict:
    """``overrides`` checked by name and type against :class:`FeatureConfig`'s fields (ValueError naming the
    parameter, ``where`` formatted with its name, and the valid names or the type), returned unchanged (an int
    stays an int: the cache key hashes the values); the ranges and combinations are FeatureConfig's own checks."""
    import typing

    from scnn.validate import check_type

    if not isinstance(overrides, dict):
        raise ValueError(f"feature overrides: expected a mapping of feature parameters, got {overrides!r}")
    hints = typing.get_type_hints(FeatureConfig)
    checked = {}
    for key, value in overrides.items():
        if key not in hints:
            raise ValueError(f"{where.format(key=key)}: no such feature parameter; valid: {', '.join(hints)}")
        check_type(where.format(key=key), value, hints[key])
        checked[key] = value
    return checked


def feature_config(preset: str = "default", **overrides) -> FeatureConfig:
    """A preset by name, with keyword overrides (``feature_config("paper", top_db=30)``)."""
    if preset not in FEATURE_PRESETS:
        raise ValueError(f"unknown feature preset {preset!r}; choose one of {sorted(FEATURE_PRESETS)}")
    return replace(FEATURE_PRESETS[preset], **check_feature_overrides(overrides))


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
        # libsndfile names the file again ("Error opening '/x/y.wav': Format not recognised."): keep the reason.
        reason = "empty file" if path.exists() and path.stat().st_size == 0 else \
            str(error).replace(f"Error opening {str(path)!r}: ", "")
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
    """MFCC matrix ``[rows, num_frames]`` (float32) of one mono waveform ``[samples]`` (the log-mel
    spectrogram for ``representation="logmel"``, the fitted waveform itself, ``[1, num_frames]``, for
    ``"waveform"``)."""
    import librosa

    if config.top_db is not None and waveform.size > 0:
        waveform, _ = librosa.effects.trim(waveform, top_db=config.top_db)
    waveform = normalize_level(waveform, config.level)
    if config.representation == "waveform":
        return _fit_length(waveform, config.num_frames)[None, :].astype(np.float32)
    if config.representation == "causal_mfcc":
        from scnn.features.causal import CausalMfcc

        waveform = _fit_length(waveform, config.num_frames * config.hop_length)
        mfcc = CausalMfcc.from_config(config).push(waveform).T
        return np.pad(mfcc, ((0, (config.num_rows or config.n_mfcc) - config.n_mfcc), (0, 0))).astype(np.float32)
    if config.fit == "center":
        # librosa's centred STFT gives 1 + samples // hop frames.
        waveform = _fit_length(waveform, (config.num_frames - 1) * config.hop_length)
    # what librosa.feature.mfcc computes before its DCT, with the floor dynamic_range_db below the peak
    mfcc = librosa.power_to_db(librosa.feature.melspectrogram(
        y=waveform, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels), top_db=config.dynamic_range_db)
    if config.representation == "mfcc":
        mfcc = librosa.feature.mfcc(S=mfcc, n_mfcc=config.n_mfcc)
    if config.fit == "end":
        mfcc = mfcc[:, : config.num_frames]
        mfcc = np.pad(mfcc, ((0, 0), (0, config.num_frames - mfcc.shape[1])))
    mfcc = np.pad(mfcc, ((0, config.shape[0] - mfcc.shape[0]), (0, 0)))
    assert mfcc.shape == config.shape, (mfcc.shape, config.shape)
    return mfcc.astype(np.float32)


def file_to_mfcc(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """MFCC matrix ``[rows, num_frames]`` of one audio file."""
    waveform = load_audio(path, config.sample_rate)
    if waveform.size < 2:
        raise AudioFileError(f"{path}: only {waveform.size} sample(s), too short for features")
    return waveform_to_mfcc(waveform, config)


def _file_to_mfcc_or_error(args: tuple[str, FeatureConfig]):
    """Worker: returns (features, None, warnings) or (None, reason, warnings); the reason leaves out
    the path, which the caller pairs with it."""
    path, config = args
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return file_to_mfcc(path, config), None, [str(w.message) for w in caught]
        except AudioFileError as error:
            reason = str(error).removeprefix(f"{path}: ")
            return None, reason, [str(w.message) for w in caught]


def _init_worker():
    # Each extraction process gets one core's worth of threads (no oversubscription).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["NUMBA_NUM_THREADS"] = "1"


# --------------------------------------------------------------------------- cache
#
# A cache file holds the features of one list of files under one feature config. Its name is a
# key over the cache version, the config, and each file's absolute path and SHA-256 of its bytes:
# a recording whose content changes gets a new key even when its size and modification time are
# kept (the first version keyed on those, and served stale features). What hashing costs, measured
# on FSDD on the project's 2-core VM (3,000 files, 21 MB, in the page cache;
# benchmarks/feature_speed.py): 0.11-0.12 s, against 1.9 s to extract them and 0.02 s to load the
# cache; it grows with the bytes read, 175-200 MB/s here. For 100k files that is about 4 s at
# FSDD's size (7 kB per file) and about 18 s at Speech Commands' (1 s at 16 kHz, 32 kB per file,
# 3.2 GB), plus the disk's reading time when the files are not in the page cache; extracting as
# many files takes minutes.
#
# A cache file that cannot be read or does not hold what its key promises (truncated, emptied,
# flipped bytes, another layout) is rebuilt with a warning that names it; it is written through
# scnn.io.atomic_write, so a failed write leaves no temporary file and no half-written cache.


def content_digest(path: str | Path) -> str | None:
    """SHA-256 (hex) of a file's bytes; None when the file cannot be opened (extraction then says why)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def cache_key(paths: Sequence[str | Path], config: FeatureConfig, digests: Sequence[str | None] | None = None) -> str:
    """SHA-256 over the cache version, every feature parameter, and each file's absolute path and
    content digest (:func:`content_digest`, computed here unless given in the order of ``paths``)."""
    digests = digests if digests is not None else [content_digest(path) for path in paths]
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": FEATURE_CACHE_VERSION, "config": asdict(config)}, sort_keys=True).encode())
    for path, content in zip(paths, digests):
        digest.update(f"{os.path.abspath(path)}|{content}\n".encode())
    return digest.hexdigest()[:32]


@dataclass
class FeatureSet:
    """Features of a list of files: ``features`` [N, rows, frames] float32, row i from ``paths[i]``.

    ``skipped`` lists (path, reason) of files left out with ``skip_bad=True``; ``digests`` maps
    every requested path to the SHA-256 of its bytes (None: unreadable).
    """

    features: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False
    digests: dict[str, str | None] = field(default_factory=dict)


_CACHE_ARRAYS = {"key", "features", "paths", "skipped"}
STALE_TEMPORARY_S = 3600.0  # a cache's temporary file older than this was left by a killed process


def _load_cache(cache_file: Path, key: str, paths: list[str], config: FeatureConfig) -> FeatureSet | None:
    """The cached FeatureSet, or None (with a warning naming the file) when it is unreadable or does
    not hold the features of ``paths`` under ``config``."""
    try:
        # Opened here, not by np.load, which leaves its handle open when the zip is damaged.
        with open(cache_file, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            if set(stored.files) != _CACHE_ARRAYS:
                raise ValueError(f"holds arrays {sorted(stored.files)}, expected {sorted(_CACHE_ARRAYS)}")
            if str(stored["key"]) != key:
                raise ValueError("was written for other files or another feature config")
            features, kept, skipped = stored["features"], stored["paths"].tolist(), stored["skipped"].tolist()
        if features.dtype != np.float32 or features.ndim != 3 or features.shape[1:] != config.shape:
            raise ValueError(f"features are {features.dtype} {features.shape}, expected float32 [N, *{config.shape}]")
        if len(kept) != len(features):
            raise ValueError(f"{len(features)} feature rows for {len(kept)} paths")
        if not all("\t" in row for row in skipped):
            raise ValueError("a skipped-file row lacks its reason")
        skipped = [tuple(row.split("\t", 1)) for row in skipped]
        absolute = [os.path.abspath(p) for p in paths]
        bad = {path for path, _ in skipped}
        if kept != [path for path in absolute if path not in bad] or not bad <= set(absolute):
            raise ValueError("its file list is not the requested one")
    except Exception as error:  # noqa: BLE001  a disposable cache: anything unreadable is rebuilt
        # (BadZipFile, EOFError, "Bad CRC-32", ValueError, OSError, ...); the type stays in the message.
        warnings.warn(f"feature cache {cache_file} is unusable ({type(error).__name__}: {error}); rebuilding it",
                      stacklevel=3)
        return None
    as_given = dict(zip(absolute, paths))  # the cache stores absolute paths; give back the caller's spelling
    return FeatureSet(features, [as_given[p] for p in kept], [(as_given[p], reason) for p, reason in skipped],
                      from_cache=True)


def _save_cache(cache_file: Path, key: str, result: FeatureSet) -> None:
    """Write ``result`` atomically; a cache that cannot be written is a warning, not a failure."""
    for stale in cache_file.parent.glob(".mfcc-*.tmp"):  # left by killed processes (atomic_write's names)
        try:
            if time.time() - stale.stat().st_mtime > STALE_TEMPORARY_S:
                stale.unlink()
        except OSError:
            pass
    arrays = {"key": np.array(key), "features": result.features,
              "paths": np.array([os.path.abspath(p) for p in result.paths], dtype=str),
              "skipped": np.array([f"{os.path.abspath(p)}\t{reason}" for p, reason in result.skipped], dtype=str)}
    try:
        atomic_write(cache_file, lambda handle: np.savez(handle, **arrays))
    except OSError as error:
        warnings.warn(f"cannot write the feature cache {cache_file} ({error}); the features are used uncached",
                      stacklevel=3)


def extract_features(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> FeatureSet:
    """MFCC features of every file, loaded from the cache when no file's content changed.

    workers: extraction processes (default: all cores); progress: show a tqdm bar.
    Bad files (unreadable, empty, truncated, not audio, NaN samples) raise one
    :class:`AudioFileError` that names the first few with their reasons and counts the
    rest, unless ``skip_bad``, which leaves them out and records every one of them in
    ``FeatureSet.skipped``. The cache (see the notes above :func:`content_digest`) also
    remembers the bad files, so a strict run that stopped on them and a ``skip_bad`` run
    share one extraction.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("extract_features: the file list is empty")
    digests = [content_digest(p) for p in paths]
    result = cache_file = key = None
    if cache_dir is not None:
        key = cache_key(paths, config, digests)
        cache_file = Path(cache_dir) / f"mfcc-{key}.npz"
        if cache_file.exists():
            result = _load_cache(cache_file, key, paths, config)
    if result is None:
        result = _extract(paths, config, workers, progress)
        if cache_file is not None:
            _save_cache(cache_file, key, result)
    result.digests = dict(zip(paths, digests))
    if result.skipped and not skip_bad:
        raise AudioFileError(f"cannot use {describe_problems(result.skipped)} (of {len(paths)} files; "
                             "use --skip-bad to leave such files out)", result.skipped)
    return result


def _extract(paths: list[str], config: FeatureConfig, workers: int | None, progress: bool) -> FeatureSet:
    """Extract every file; bad ones go to ``skipped`` with their reasons. Raises only when none is readable."""
    workers = workers or os.cpu_count() or 1
    jobs = [(p, config) for p in paths]
    if workers > 1 and len(paths) > 50:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            results = list(_progress(pool.map(_file_to_mfcc_or_error, jobs, chunksize=32), len(jobs), progress))
    else:
        results = list(_progress(map(_file_to_mfcc_or_error, jobs), len(jobs), progress))
    _warn_summarised([message for _, _, messages in results for message in messages])
    features, kept, skipped = [], [], []
    for path, (matrix, reason, _) in zip(paths, results):
        if reason is None:
            features.append(matrix)
            kept.append(path)
        else:
            skipped.append((path, reason))
    if not features:
        raise AudioFileError(f"none of the {len(paths)} files could be read: {describe_problems(skipped)}", skipped)
    return FeatureSet(np.stack(features), kept, skipped)


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


