"""Files written atomically (temporary file in the same folder, then rename).

An interrupted write never leaves a half-written checkpoint or result behind,
and a file that was there before stays intact until the new one is complete.
Files get the permissions of an ordinary ``open()`` (0o666 less the umask), not the
0o600 of the temporary file, so collaborators can read results as with any other file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import torch


def _read_umask() -> int:
    """The process umask (os.umask can only be read by setting it: set, then restore at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once, at import: a later round trip could race with threads creating files
FILE_MODE = 0o666 & ~UMASK


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``.

    The result has mode ``0o666 & ~umask``, as a file written with ``open()`` would.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)  # NamedTemporaryFile creates 0o600
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_plain) + "\n")


def save_checkpoint(path: str | Path, checkpoint: dict) -> Path:
    return atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint {path} cannot be loaded ({type(error).__name__}: {error})") from error


def _plain(value):
    """JSON fallback for numpy scalars/arrays, tensors and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def describe_problems(problems: Sequence[tuple[str, str]], shown: int = 5) -> str:
    """One line about bad files: the first ``shown`` as ``PATH: REASON``, then how many more.

    problems: (path, reason) pairs. ``describe_problems([("a.wav", "empty file")] * 7, 2)`` gives
    ``"7 files: a.wav: empty file; a.wav: empty file; ... and 5 more"``.
    """
    listed = "; ".join(f"{path}: {reason}" for path, reason in problems[:shown])
    more = f"; ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} file{'' if len(problems) == 1 else 's'}: {listed}{more}"
