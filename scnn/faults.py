"""Fault injection, for the reliability tests and ``benchmarks/faults.py``.

Each helper does one thing a real fault does: a process killed at an arbitrary moment
(SIGKILL: no handler, no cleanup), bytes flipped or cut off, a file's content changed while
its size and modification time stay the same (what a cache keyed by size and mtime cannot
see), a folder made read-only.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import time
from pathlib import Path


def flip_bytes(path: str | Path, count: int = 16, seed: int = 0) -> list[int]:
    """Invert ``count`` bytes of ``path`` at seeded random offsets (size and mtime kept); returns the offsets."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    if not data:
        raise ValueError(f"{path} is empty: no byte to flip")
    offsets = sorted(random.Random(seed).sample(range(len(data)), min(count, len(data))))
    for offset in offsets:
        data[offset] ^= 0xFF
    replace_keeping_stat(path, bytes(data))
    return offsets


def truncate(path: str | Path, keep: int | float = 0.5) -> int:
    """Cut ``path`` short: keep ``keep`` bytes (an int) or that fraction of them (a float); returns the new size."""
    path = Path(path)
    size = path.stat().st_size
    new_size = int(size * keep) if isinstance(keep, float) else int(keep)
    with open(path, "r+b") as handle:
        handle.truncate(max(0, min(new_size, size)))
    return path.stat().st_size


def cut_last_line(path: str | Path, keep_fraction: float = 0.5) -> int:
    """Cut the last line of a text file short (as a write interrupted mid-line would); returns its line number."""
    path = Path(path)
    text = path.read_bytes()
    body = text.rstrip(b"\n")
    start = body.rfind(b"\n") + 1
    path.write_bytes(body[:start + max(1, int((len(body) - start) * keep_fraction))])
    return body.count(b"\n") + 1


def replace_keeping_stat(path: str | Path, data: bytes) -> None:
    """Write ``data`` into ``path`` and put back its modification and access times (ns)."""
    path = Path(path)
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def noise_like(path: str | Path, seed: int = 0) -> None:
    """Replace a wav's samples by uniform noise, same format, length, size and mtime."""
    import numpy as np
    import soundfile

    path = Path(path)
    info = soundfile.info(str(path))
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-0.5, 0.5, size=(info.frames, info.channels)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, noise, info.samplerate, subtype=info.subtype, format=info.format)
    data = buffer.getvalue()
    if len(data) != path.stat().st_size:
        raise ValueError(f"noise for {path} has {len(data)} bytes, the file {path.stat().st_size}")
    replace_keeping_stat(path, data)


def start(command: list[str], **kwargs) -> subprocess.Popen:
    """Start ``command`` in its own process group (so a kill reaches its children too), output captured."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


def kill(process: subprocess.Popen) -> str:
    """SIGKILL the process group of ``process`` (from :func:`start`); returns what it printed."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    output, _ = process.communicate()
    return output or ""


def kill_at_random(command: list[str], low_s: float, high_s: float, rng: random.Random,
                   **kwargs) -> tuple[bool, float, str]:
    """Run ``command`` and SIGKILL it after a random delay in [low_s, high_s] seconds.

    Returns (killed, delay, output): killed is False when the command finished (exit status 0)
    before the kill; a command that fails on its own raises RuntimeError with its output.
    """
    delay = rng.uniform(low_s, high_s)
    process = start(command, **kwargs)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    if process.poll() is None:
        return True, delay, kill(process)
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed on its own (exit {process.returncode}):\n{output}")
    return False, delay, output


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def without_permission_override():
    """A ``preexec_fn`` under which a superuser meets permission bits as the files' owner does: it drops
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the child's capability bounding set (Linux), so
    a read-only folder is read-only to it as to users. None when not running as root."""
    if os.geteuid() != 0:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2  # <linux/prctl.h>, <linux/capability.h>

    def drop() -> None:
        for capability in (cap_dac_override, cap_dac_read_search):
            if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return drop
