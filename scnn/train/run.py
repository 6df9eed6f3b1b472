"""A run folder's bookkeeping: claiming the folder, comparing settings, per-epoch metrics, versions.

A run folder (``train``'s out_dir, a sweep folder, a search folder) is used by one process
at a time and says what it holds:

- :func:`check_output_folder` creates it and proves it writable before any work starts
  (a read-only folder or a path under a file is refused at once, not after an epoch);
- :func:`folder_lock` holds an advisory lock, ``OUT/.lock`` (``fcntl.flock``, released by
  the kernel when the process ends, even by SIGKILL), and refuses a second process;
- :func:`claim_run_folder` refuses to reuse a folder holding a run unless asked to resume
  or overwrite it, and :func:`remove_run_files` clears an old run before a new one writes;
- :func:`setting_differences` names every field where two settings differ (old -> new),
  for resumes, sweeps and searches that refuse to mix runs of different settings.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from scnn.io import write_text

# Every results.json that scnn writes carries "schema_version" (this) and "kind" ("train", "evaluate",
# "quantize"); docs/results_schema.md describes every key of each kind. Bump when a key is renamed,
# removed or changes meaning (adding a key does not need a bump).
RESULTS_SCHEMA_VERSION = 1

# What train() writes, in the order an overwrite removes it: first the claim that the run is
# finished (results.json), last the checkpoint, so that a removal cut short leaves either the
# old run or an unfinished (resumable) part of it, never a mixture that looks finished.
RUN_FILES = ("results.json", "confusion_matrix.png", "training_curves.png", "best.pt", "metrics.csv",
             "metrics.jsonl", "last.pt")
RUN_MARKERS = ("last.pt", "best.pt", "results.json")  # any of these: the folder holds a run
LOCK_NAME = ".lock"


class RunFolderError(ValueError):
    """An output folder cannot be used as asked; the message names the folder and what to do."""


class SettingsMismatch(ValueError):
    """A resume or a rerun was given other settings than the folder's run; the message names each field."""


def library_versions() -> dict:
    import librosa
    import snntorch

    return {"python": platform.python_version(), "torch": torch.__version__, "snntorch": snntorch.__version__,
            "librosa": librosa.__version__, "numpy": np.__version__, "platform": platform.platform()}


def write_history(out_dir: Path, history: list[dict]) -> None:
    """metrics.jsonl and metrics.csv, rewritten whole from the history (no duplicates after resume)."""
    write_text(out_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    columns = list(dict.fromkeys(key for row in history for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(out_dir / "metrics.csv", buffer.getvalue())


# --------------------------------------------------------------------------- the folder itself


def check_output_folder(folder: str | Path, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) if needed and prove that files can be written in it.

    Raises RunFolderError naming the folder (and ``option``, the flag it came from) when a part
    of the path is a file, the folder cannot be created, or a file cannot be written in it. The
    check writes a real temporary file (and removes it): permission bits alone do not say whether
    a write succeeds (read-only mounts, ACLs, the superuser).
    """
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                where = "is a file" if part == folder else f"lies under {part}, which is a file"
                raise RunFolderError(f"{option} {folder} {where}, not a folder; choose another output folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(f"{option} {folder} cannot be created ({error.strerror or error}); "
                             "choose a folder you can write to") from None
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as error:
        raise RunFolderError(f"{option} {folder} is not writable ({error.strerror or error}); "
                             "choose a folder you can write to") from None
    return folder


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the advisory lock ``folder/.lock`` while the block runs; RunFolderError if another process holds it.

    The lock file keeps the holder's PID for the message of a refused process. The kernel
    releases the lock when the holder exits, however it exits, so a killed run never leaves a
    stale lock behind (the file stays; the lock does not). Only processes using this lock are
    kept out: it is advisory.
    """
    import fcntl

    path = Path(folder) / LOCK_NAME
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunFolderError(f"{folder} is in use by another process (PID {holder}, lock {path}); wait for "
                                 "it to finish, or choose another output folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock


def existing_run_files(folder: str | Path) -> list[str]:
    """The names of :data:`RUN_MARKERS` present in ``folder``: non-empty means it holds a run."""
    return [name for name in RUN_MARKERS if (Path(folder) / name).exists()]


def claim_run_folder(folder: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to reuse a folder that holds a run, unless resuming or overwriting it.

    resume: continue the run from ``last.pt`` (a folder with results but no ``last.pt``
    cannot be continued). overwrite: the old run's files are to be removed (by the caller,
    with :func:`remove_run_files`, once the new run is ready to write).
    """
    if resume and overwrite:
        raise RunFolderError("resume and overwrite exclude each other: resume continues the run in "
                             f"{folder}, overwrite replaces it")
    present = existing_run_files(folder)
    if not present or overwrite:
        return
    if not resume:
        raise RunFolderError(f"{folder} already holds a run ({', '.join(present)}); pass --resume to continue it, "
                             "--overwrite to replace it, or choose another output folder")
    if "last.pt" not in present:
        raise RunFolderError(f"{folder} holds a run ({', '.join(present)}) but no last.pt to resume from; "
                             "pass --overwrite to replace it, or choose another output folder")


def remove_run_files(folder: str | Path, names: Iterable[str] = RUN_FILES) -> list[str]:
    """Remove an old run's files (only those ``train`` writes), results first; returns the removed names."""
    removed = []
    for name in names:
        path = Path(folder) / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


def remove_stale_temporaries(folder: str | Path) -> list[str]:
    """Remove the temporary files of writes that were killed midway (``.NAME.XXXX.tmp``, see
    :func:`scnn.io.atomic_write`). Only while holding the folder's lock: a live writer's file
    would go too."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


# --------------------------------------------------------------------------- comparing settings


def flatten(values: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; tuples become lists (a checkpoint may hold either)."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = _plain(value)
    return flat


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


ABSENT = object()


def _show(value) -> str:
    return "(unset)" if value is ABSENT else repr(value) if isinstance(value, str) else str(value)


def setting_differences(old: dict, new: dict, prefix: str = "", ignore: Iterable[str] = ()) -> list[str]:
    """``["prefix.field: old -> new", ...]`` for every (nested) field that differs, sorted by name.

    ignore: top-level field names left out (settings that do not change the result, e.g. threads).
    A field present on one side only shows as ``(unset)`` on the other.
    """
    ignore = set(ignore)
    old = flatten({k: v for k, v in old.items() if k not in ignore})
    new = flatten({k: v for k, v in new.items() if k not in ignore})
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, ABSENT), new.get(key, ABSENT)
        if before != after or type(before) is not type(after) and isinstance(before, bool) != isinstance(after, bool):
            lines.append(f"{prefix}{key}: {_show(before)} -> {_show(after)}")
    return lines


def same_folder(old: str | None, new: str | None) -> bool:
    """Two data folders are the same when their strings match or they resolve to the same place."""
    if old == new:
        return True
    if old is None or new is None:
        return False
    return Path(old).expanduser().resolve() == Path(new).expanduser().resolve()
