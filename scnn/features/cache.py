"""A feature cache that scales to 100k+ files: content-keyed shards, written atomically, read memory-mapped.

:func:`scnn.features.mfcc.extract_features` keeps one ``.npz`` per file list: fine for FSDD's 3,000
files, but for Speech Commands' 105,829 a single file must be written whole at the end (a crash loses
every extracted file), is rewritten when one recording changes, and is read whole into memory. Here the
sorted file list is cut into shards of ``shard_size`` files (4,096 by default); each shard is

    <cache_dir>/mfcc-shards-<config key>/<shard key>.npy    float32 [kept files, rows, frames]
    <cache_dir>/mfcc-shards-<config key>/<shard key>.json   its index: {"key", "rows", "shape", "sha256",
                                                              "paths": [kept, absolute], "skipped": [[path, reason]]}

where the shard key is :func:`scnn.features.mfcc.cache_key` of the shard's files (each one's absolute
path and SHA-256 of its bytes) and the feature config, so the guarantees are those of the single-file
cache: a recording whose content changes gets a new key (its shard alone is rebuilt); a damaged shard
(truncated, other shape, index that does not match, or data whose bytes changed) is rebuilt with a warning
naming the file. Both files are written through :func:`scnn.io.atomic_write`, the ``.npy`` first and the
index last, so a shard is complete exactly when its index exists and agrees with it; an interrupted build
keeps every finished shard and resumes with the next. Loading opens each ``.npy`` with
``np.load(mmap_mode="r")`` and extraction holds one shard in memory at a time.

For such sets :func:`scnn.data.prepare.prepare_data` also keeps each normalised split in a file beside the
shards, mapped as a tensor (:func:`mapped_rows`): training indexes its batches from the page cache.

Data checksums: the index holds the SHA-256 of the shard's array bytes (:func:`data_digest`), and each
``split-<key>.npy`` has a ``split-<key>.npy.sha256`` beside it (``sha256sum`` format), so bytes flipped on
disk are noticed on open instead of served as features. An index without the digest (a shard written
before this check existed) counts as damaged: rebuilt once, with the warning. Verifying reads every byte
of the mapped file once per open: hashlib's SHA-256 ran at 1.0 GB/s on one idle core (0.5 GB/s on a loaded,
shared one), measured on a 33 MB shard of 4,096 files (40 x 50) in the page cache, CPU with SHA extensions
(blake2b: 0.35 GB/s there). So 35-70 ms per full shard and 1-2 s for Speech Commands' 26 shards (850 MB),
as much again for its split files, plus the disk read when not cached; the pages read stay cached for
training.

What stays the same cost: the content digests read every file's bytes once per call (hashed in parallel
threads here), the price of keys that notice changed content (benchmarks/cache_scale.py measures it).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

import time

from scnn.features.mfcc import (FEATURE_CACHE_VERSION, STALE_TEMPORARY_S, AudioFileError, FeatureConfig, FeatureSet,
                                _file_to_mfcc_or_error, _init_worker, _warn_summarised, cache_key, content_digest,
                                extract_features)
from scnn.io import atomic_write, describe_problems, write_json, write_text

SHARD_FILES = 4096  # files per shard: 4,096 x 40 x 50 float32 = 33 MB for the Speech Commands recipes


class ShardedFeatures:
    """Features ``[N, rows, frames]`` float32 spread over memory-mapped shards, read only where indexed.

    Indexing with an int, a slice, or an integer / boolean array returns an in-memory float32 array
    (rows in the order asked); ``np.asarray(features)`` reads them all.
    """

    def __init__(self, shards: Sequence[np.ndarray], row_shape: tuple[int, int], keys: Sequence[str] = (),
                 folder: Path | None = None):
        self.shards = list(shards)
        self.keys = list(keys)  # each shard's content key: what the rows are
        self.folder = folder  # where the shards live (mapped_rows writes beside them)
        self.offsets = np.cumsum([0] + [len(shard) for shard in self.shards])
        self.shape = (int(self.offsets[-1]), *row_shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise IndexError(f"boolean index of shape {index.shape} for {len(self)} rows")
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        index = np.where(index < 0, index + len(self), index)
        out = np.empty((len(index), *self.shape[1:]), np.float32)
        shard_of = np.searchsorted(self.offsets, index, side="right") - 1
        for shard in np.unique(shard_of):
            chosen = shard_of == shard
            local = index[chosen] - self.offsets[shard]
            order = np.argsort(local, kind="stable")  # ascending reads from the mapped file
            out[np.flatnonzero(chosen)[order]] = self.shards[shard][local[order]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[np.arange(len(self))]
        return values if dtype is None else values.astype(dtype)


def config_key(config: FeatureConfig) -> str:
    """SHA-256 (first 16 hex digits) of the cache version and every feature parameter: the shard folder."""
    text = json.dumps({"version": FEATURE_CACHE_VERSION, "config": asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard_folder(cache_dir: str | Path, config: FeatureConfig) -> Path:
    return Path(cache_dir) / f"mfcc-shards-{config_key(config)}"


def data_digest(array: np.ndarray) -> str:
    """SHA-256 (hex) of an array's bytes in C order, as ``np.save`` writes them: the checksum of a shard or
    split file's data. An array not in C order (a header that says Fortran order) raises ValueError, since
    the same bytes would then mean other values."""
    if not array.flags.c_contiguous:
        raise ValueError("its data are not stored in C order")
    return hashlib.sha256(array).hexdigest()


def content_digests(paths: Sequence[str], threads: int | None = None) -> list[str | None]:
    """:func:`~scnn.features.mfcc.content_digest` of every file, in threads (hashlib releases the GIL while
    it hashes, so reading and hashing overlap)."""
    threads = threads or min(8, os.cpu_count() or 1)
    if threads <= 1 or len(paths) < 64:
        return [content_digest(path) for path in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(content_digest, paths, chunksize=64))


def cached_features(paths: Sequence[str | Path], config: FeatureConfig, cache_dir: str | Path | None = None,
                    workers: int | None = None, skip_bad: bool = False, progress: bool = True,
                    shard_size: int = SHARD_FILES) -> FeatureSet:
    """Features of every file: lists longer than ``shard_size`` through the sharded cache
    (:func:`sharded_features`), shorter ones through :func:`~scnn.features.mfcc.extract_features`'s
    single file. The arguments and the errors are extract_features'."""
    if cache_dir is None or len(paths) <= shard_size:
        return extract_features(paths, config, cache_dir=cache_dir, workers=workers, skip_bad=skip_bad,
                                progress=progress)
    return sharded_features(paths, config, cache_dir, workers=workers, skip_bad=skip_bad, progress=progress,
                            shard_size=shard_size)


def sharded_features(paths: Sequence[str | Path], config: FeatureConfig, cache_dir: str | Path,
                     workers: int | None = None, skip_bad: bool = False, progress: bool = True,
                     shard_size: int = SHARD_FILES) -> FeatureSet:
    """Features of every file through the sharded cache (the module's notes); ``FeatureSet.features`` is a
    :class:`ShardedFeatures`, row i from ``FeatureSet.paths[i]``.

    Shards already in the cache are opened, the others extracted (``workers`` processes, default all cores)
    and written one by one. Bad files are left out and listed in ``skipped`` (all of them, with reasons);
    without ``skip_bad`` they raise one :class:`~scnn.features.mfcc.AudioFileError` naming them, after the
    good files' shards are written, so the next call does not extract them again.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("sharded_features: the file list is empty")
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    folder = shard_folder(cache_dir, config)
    digests = content_digests(paths, workers)
    chunks = [range(start, min(start + shard_size, len(paths))) for start in range(0, len(paths), shard_size)]
    keys = [cache_key([paths[i] for i in chunk], config, [digests[i] for i in chunk]) for chunk in chunks]
    opened = [_open_shard(folder, key, [paths[i] for i in chunk], config) for key, chunk in zip(keys, chunks)]
    missing = [number for number, shard in enumerate(opened) if shard is None]
    if missing:
        _build_shards(folder, config, [(keys[n], [paths[i] for i in chunks[n]]) for n in missing], workers,
                      progress, cached=len(chunks) - len(missing))
        for number in missing:
            opened[number] = _open_shard(folder, keys[number], [paths[i] for i in chunks[number]], config,
                                         just_written=True)
    as_given = {os.path.abspath(p): p for p in paths}  # stored absolute; given back as the caller spelled them
    kept = [as_given[p] for shard in opened for p in shard[1]]
    skipped = [(as_given[p], reason) for shard in opened for p, reason in shard[2]]
    if not kept:
        raise AudioFileError(f"none of the {len(paths)} files could be read: {describe_problems(skipped)}", skipped)
    result = FeatureSet(ShardedFeatures([shard[0] for shard in opened], config.shape, keys, folder), kept, skipped,
                        from_cache=not missing, digests=dict(zip(paths, digests)))
    if skipped and not skip_bad:
        raise AudioFileError(f"cannot use {describe_problems(skipped)} (of {len(paths)} files; "
                             "use --skip-bad to leave such files out)", skipped)
    return result


def _open_shard(folder: Path, key: str, paths: list[str], config: FeatureConfig, just_written: bool = False):
    """(memory-mapped features, kept absolute paths, skipped (path, reason)) of a complete shard, or None
    when it is absent, or damaged (then with a warning naming the file, and rebuilt by the caller).

    Checked: the index parses and was written for this key; the ``.npy`` holds float32 rows of the config's
    shape, one per kept path, and its bytes have the SHA-256 the index records (this reads the whole shard
    once, 35-70 ms for 33 MB; see the module notes); the kept and skipped paths are the requested files.
    """
    index_file, array_file = folder / f"{key}.json", folder / f"{key}.npy"
    if not index_file.exists():
        return None
    try:
        index = json.loads(index_file.read_text())
        if not isinstance(index, dict) or index.get("key") != key:
            raise ValueError("its index was written for other files or another feature config")
        rows, kept = int(index["rows"]), list(index["paths"])
        skipped = [tuple(row) for row in index["skipped"]]
        if rows == 0:  # every file of the shard was bad: nothing to map
            features = np.zeros((0, *config.shape), np.float32)
        else:
            features = np.load(array_file, mmap_mode="r", allow_pickle=False)
        if features.dtype != np.float32 or features.shape != (rows, *config.shape):
            raise ValueError(f"{array_file.name} holds {features.dtype} {features.shape}, the index promises "
                             f"float32 {(rows, *config.shape)}")
        if "sha256" not in index:
            raise ValueError("its index has no SHA-256 of the data (written before shards were checksummed)")
        if data_digest(features) != index["sha256"]:
            raise ValueError(f"the bytes of {array_file.name} do not match the SHA-256 in its index")
        if len(kept) != rows or not all(len(row) == 2 for row in skipped):
            raise ValueError(f"{rows} rows for {len(kept)} paths, or a skipped file without its reason")
        absolute = [os.path.abspath(p) for p in paths]
        bad = {path for path, _ in skipped}
        if kept != [p for p in absolute if p not in bad] or not bad <= set(absolute):
            raise ValueError("its file list is not the requested one")
    except Exception as error:  # noqa: BLE001  a disposable cache: anything unreadable is rebuilt
        if just_written:
            raise OSError(f"feature cache shard {array_file} is unreadable right after it was written: {error}") \
                from error
        warnings.warn(f"feature cache shard {array_file} is unusable ({type(error).__name__}: {error}); "
                      "rebuilding it", stacklevel=4)
        index_file.unlink(missing_ok=True)
        return None
    return features, kept, skipped


def _build_shards(folder: Path, config: FeatureConfig, shards: list[tuple[str, list[str]]], workers: int | None,
                  progress: bool, cached: int) -> None:
    """Extract and write each (key, paths) shard, one in memory at a time, with one pool of processes."""
    workers = workers or os.cpu_count() or 1
    for stale in folder.glob(".*.tmp"):  # atomic_write's temporaries, left by killed processes
        try:
            if time.time() - stale.stat().st_mtime > STALE_TEMPORARY_S:
                stale.unlink()
        except OSError:
            pass
    total = sum(len(paths) for _, paths in shards)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"MFCC ({len(shards)} shards to build, {cached} cached)", unit="file")
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) if workers > 1 else None
    try:
        for key, paths in shards:
            jobs = [(p, config) for p in paths]
            results = list(pool.map(_file_to_mfcc_or_error, jobs, chunksize=32) if pool is not None
                           else map(_file_to_mfcc_or_error, jobs))
            _warn_summarised([message for _, _, messages in results for message in messages])
            kept = [os.path.abspath(p) for p, (matrix, _, _) in zip(paths, results) if matrix is not None]
            skipped = [[os.path.abspath(p), reason] for p, (matrix, reason, _) in zip(paths, results) if reason]
            features = (np.stack([matrix for matrix, _, _ in results if matrix is not None]) if kept
                        else np.zeros((0, *config.shape), np.float32))
            _write_shard(folder, key, features, kept, skipped)
            if bar is not None:
                bar.update(len(paths))
    finally:
        if pool is not None:
            pool.shutdown()
        if bar is not None:
            bar.close()


def _write_shard(folder: Path, key: str, features: np.ndarray, kept: list[str], skipped: list[list[str]]) -> None:
    """The ``.npy`` first, then the index that completes the shard (with the data's SHA-256), each atomically."""
    features = np.ascontiguousarray(features, np.float32)
    atomic_write(folder / f"{key}.npy", lambda handle: np.save(handle, features, allow_pickle=False))
    write_json(folder / f"{key}.json", {"key": key, "rows": len(kept), "shape": list(features.shape),
                                        "sha256": data_digest(features), "paths": kept, "skipped": skipped})


def mapped_rows(features: ShardedFeatures, rows: Sequence[int], normalizer, chunk: int = SHARD_FILES):
    """``normalizer(features[rows])`` as a tensor ``[len(rows), 1, *row shape]`` float32 backed by a file.

    The file, ``split-<key>.npy`` beside the shards (key: the shards' keys, the rows and the normaliser's
    state), is written ``chunk`` rows at a time through a temporary name and renamed into place, then its
    SHA-256 goes to ``split-<key>.npy.sha256``: the file is complete exactly when that exists. It is mapped
    copy-on-write: reading a batch pages in only its rows, the kernel may drop them again, and nothing
    written to the tensor reaches the file. A later call with the same rows reuses it after checking its
    dtype, shape and SHA-256 (one read of the whole file, 0.5-1 GB/s; see the module notes); a damaged one
    is rebuilt with a warning naming it. normalizer: :class:`scnn.features.normalize.Normalizer` (or any
    ``[n, rows, frames] -> same`` function with a ``state_dict()``).
    """
    import torch

    rows = [int(row) for row in rows]
    shape = (len(rows), 1, *features.shape[1:])
    if not rows or features.folder is None:
        values = normalizer(features[rows]) if rows else np.zeros((0, *features.shape[1:]), np.float32)
        return torch.from_numpy(np.ascontiguousarray(values, np.float32)).unsqueeze(1)
    identity = json.dumps({"shards": features.keys, "normalizer": normalizer.state_dict()}, sort_keys=True)
    digest = hashlib.sha256(identity.encode())
    digest.update(np.asarray(rows, np.int64).tobytes())
    path = features.folder / f"split-{digest.hexdigest()[:32]}.npy"
    checksum = path.with_name(path.name + ".sha256")
    if path.exists() and checksum.exists():  # without its checksum a split file is unfinished: rebuilt quietly
        try:
            mapped = np.load(path, mmap_mode="c", allow_pickle=False)
            if mapped.dtype != np.float32 or mapped.shape != shape:
                raise ValueError(f"holds {mapped.dtype} {mapped.shape}, expected float32 {shape}")
            expected = checksum.read_text().split()[:1]
            if data_digest(mapped) not in expected:
                raise ValueError(f"its bytes do not match the SHA-256 in {checksum.name}")
            return torch.from_numpy(mapped)
        except Exception as error:  # noqa: BLE001  rebuilt below
            warnings.warn(f"feature split file {path} is unusable ({type(error).__name__}: {error}); rebuilding it",
                          stacklevel=2)
    checksum.unlink(missing_ok=True)  # first: a rebuild cut short must not pair new bytes with an old checksum
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = hashlib.sha256()
    try:
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
        for start in range(0, len(rows), chunk):
            values = np.ascontiguousarray(normalizer(features[rows[start:start + chunk]]), np.float32)
            out[start:start + chunk, 0] = values
            data.update(values)  # the file's bytes in order: rows are C-contiguous along the first axis
        out.flush()
        del out
        with open(temporary, "rb+") as handle:  # on disk before the name says it is complete
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    write_text(checksum, f"{data.hexdigest()}  {path.name}\n")
    return torch.from_numpy(np.load(path, mmap_mode="c", allow_pickle=False))
