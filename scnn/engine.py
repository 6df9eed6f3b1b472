"""Inference helpers that exploit binary spikes: a dense layer that skips silent inputs.

A dense layer fed by spikes ``S`` (0/1, ``[N, K]``, N = T * B rows) computes
``I = S @ W.T + b``. Every input feature k that is silent in all N rows contributes
nothing, so the product only needs the active columns::

    active = {k : S[n, k] = 1 for some n}                 (one pass over S)
    I = S[:, active] @ W[:, active].T + b                 (a smaller dense matmul)

This keeps the work in the BLAS matmul (the CPU's fast path) and only shrinks K; the
result equals the dense product up to float32 summation order (the skipped terms are
exact zeros). It pays when few inputs are active: measured on the 2-core EPYC
(``benchmarks/bench_engine.py``, ``docs/engine.md``), building the index costs about a
fifth of the dense matmul, so it wins below roughly half of the columns active and
loses above. Element-level sparse formats were measured too and lost: building a CSR
matrix from the dense spikes (``nonzero``) alone costs about as much as the dense
matmul at 5-10 % density on this CPU.

It is off by default; turn it on for inference with :func:`sparse_inference`::

    with torch.inference_mode(), sparse_inference():
        logits = model(x).logits

It never runs while gradients are recorded (training stays on the dense path).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

_SETTINGS = {"enabled": False, "max_active_fraction": 0.5}


@contextmanager
def sparse_inference(enabled: bool = True, max_active_fraction: float = 0.5):
    """Within the block, spike-fed dense layers skip silent inputs (inference only).

    max_active_fraction: use the skipping product only when at most this fraction of
    input columns is active in the batch; otherwise the plain dense product.
    """
    previous = dict(_SETTINGS)
    _SETTINGS.update(enabled=enabled, max_active_fraction=max_active_fraction)
    try:
        yield
    finally:
        _SETTINGS.update(previous)


def sparse_inference_enabled() -> bool:
    return _SETTINGS["enabled"] and not torch.is_grad_enabled()


def active_input_linear(spikes: torch.Tensor, linear: nn.Linear, max_active_fraction: float = 1.0) -> torch.Tensor:
    """``linear(spikes)`` computed over the input columns that spike at least once.

    spikes: ``[N, K]`` binary (any float, zeros skipped); returns ``[N, out_features]``.
    Falls back to the dense product when more than ``max_active_fraction`` of K is active.
    """
    active = spikes.any(dim=0).nonzero().squeeze(1)
    if active.numel() > max_active_fraction * spikes.shape[1]:
        return linear(spikes)
    weight = linear.weight.index_select(1, active)  # [out, k]
    inputs = spikes.index_select(1, active)          # [N, k]
    if linear.bias is None:
        return inputs @ weight.t()
    return torch.addmm(linear.bias, inputs, weight.t())


def dense_synapse(module: nn.Module) -> nn.Linear | None:
    """The nn.Linear of a dense synapse (``Linear`` or ``Sequential(Flatten, Linear)``), else None."""
    if isinstance(module, nn.Linear):
        return module
    if isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[0], nn.Flatten) \
            and isinstance(module[1], nn.Linear):
        return module[1]
    return None


def spike_fed_current(block: nn.Module, spikes: torch.Tensor) -> torch.Tensor | None:
    """Current of a SpecNet block from spikes ``[T, B, ...]`` by skipping silent inputs.

    Returns None when the path does not apply (disabled, gradients on, not a dense
    synapse, or pooling/dropout in the block), so the caller runs the dense path.
    """
    if not sparse_inference_enabled():
        return None
    linear = dense_synapse(block.synapse)
    if linear is None or not isinstance(block.pool, nn.Identity) or not isinstance(block.dropout, nn.Identity):
        return None
    steps, batch = spikes.shape[:2]
    flat = spikes.reshape(steps * batch, -1)
    current = active_input_linear(flat, linear, _SETTINGS["max_active_fraction"])
    return current.reshape(steps, batch, -1)


# --------------------------------------------------------------------------- memory allocator

_MALLOC = {"configured": False}


def keep_freed_memory(max_mapped_bytes: int = 1 << 30) -> bool:
    """Ask glibc's malloc to keep large freed blocks for reuse instead of unmapping them.

    PyTorch's CPU tensors come straight from malloc. glibc serves blocks above its mmap
    threshold (128 KiB, rising to at most 32 MiB) with fresh pages and unmaps them on free,
    and it returns the top of its heap to the system past a trim threshold, so every
    training step page-faults its activation buffers in again: measured on the 2-core
    EPYC, Model A's engine step went from about 35-38 ms to 27 ms (T = 10, batch 16) with
    both thresholds raised, and the reference loop, whose per-step tensors are small, did
    not change. The cost is that the process keeps its peak heap instead of shrinking.

    Blocks up to ``max_mapped_bytes`` then come from the heap, which is never trimmed.
    Process-wide and idempotent; returns False (nothing changed) where the C library is not
    glibc (macOS, Windows, musl) or the call fails. ``train`` calls it on CPU.
    """
    if _MALLOC["configured"]:
        return True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    done = libc.mallopt(m_mmap_threshold, int(max_mapped_bytes)) == 1
    done = libc.mallopt(m_trim_threshold, 2**31 - 1) == 1 and done
    _MALLOC["configured"] = done
    return done
