"""Inference paths that exploit binary spikes, and the memory-allocator setting for training.

In inference (gradients off, CPU, float32) a spiking :class:`scnn.models.SpecNet` takes
compiled kernels (:mod:`scnn.engine.kernels`) where they were measured to pay
(``benchmarks/bench_engine.py``, docs/engine.md):

* every hidden LIF layer: one compiled pass per sample instead of ~4 torch operations
  per step (same spikes);
* a LIF followed by a dense layer: under direct encoding (the first LIF, static input)
  neurons grouped by their spike train, one weight row added per active neuron instead of
  a dense product over all T steps; otherwise, when at most ``max_density`` of the spikes
  are 1, the spikes passed as CSR to MKL's sparse product without a dense copy.

They change the float32 summation order of dense products, not the spikes of the layer
they compute; the tests compare them with the dense path and with snntorch. They are on by
default and can be switched off (or the CSR threshold moved) for a block::

    with torch.inference_mode(), fast_inference(enabled=False):
        logits = model(x).logits        # the plain torch path

Training takes the torch path, except for one grouped product: the first LIF under static
input and the dense layer after it (:func:`grouped_training_applies`), the sparse products
of large spike-fed dense layers at low spike density (:func:`sparse_training`,
:mod:`scnn.engine.synapses`) and the event-driven products of spike-fed convolutions
(:func:`sparse_conv_training`, :mod:`scnn.engine.sparse_conv`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from scnn.engine import kernels as spike_kernels

# max_density: CSR product at or below this spike density (measured crossover 0.075-0.09,
# `python benchmarks/bench_engine.py --crossover`);
# min_csr_weights: smaller dense layers stay dense (the CSR set-up costs more than they do);
# min_pattern_steps: the grouped first layer needs a few steps to beat one dense product.
_SETTINGS = {"enabled": True, "grouped_training": True, "max_density": 0.075, "min_csr_weights": 1 << 16,
             "min_pattern_steps": 4}


@contextmanager
def fast_inference(enabled: bool = True, max_density: float = 0.075):
    """Within the block, turn the compiled inference paths on or off (default: on).

    max_density: use the CSR product for a spike-fed dense layer only at or below this
    fraction of nonzero inputs; otherwise the dense product.
    """
    if not 0.0 <= max_density <= 1.0:
        raise ValueError(f"max_density must lie in [0, 1], got {max_density}")
    previous = dict(_SETTINGS)
    _SETTINGS.update(enabled=enabled, max_density=max_density)
    try:
        yield
    finally:
        _SETTINGS.update(previous)


@contextmanager
def _overridden(settings: dict, enabled: bool, max_density: float | None, min_rows: int | None,
                max_forward_density: float | None = None):
    """``settings`` (a module-level dict of thresholds) changed for the block and restored after it:
    ``max_density`` moves the weight-gradient and forward thresholds, ``max_forward_density`` the forward's
    alone (after it)."""
    for name, value in (("max_density", max_density), ("max_forward_density", max_forward_density)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    if min_rows is not None and min_rows < 0:
        raise ValueError(f"min_rows must be at least 0, got {min_rows}")
    previous = dict(settings)
    settings["enabled"] = enabled
    if max_density is not None:
        settings.update(max_density=max_density, max_forward_density=max_density)
    if max_forward_density is not None:
        settings["max_forward_density"] = max_forward_density
    if min_rows is not None:
        settings["min_rows"] = min_rows
    try:
        yield
    finally:
        settings.clear()
        settings.update(previous)


def sparse_training(enabled: bool = True, max_density: float | None = None, min_rows: int | None = None):
    """Within the block, turn the sparse training products of spike-fed dense layers on or off
    (:data:`scnn.engine.synapses.SPARSE_TRAINING`; default on), or move their density threshold
    (forward and weight gradient alike) or the fewest rows (T * B) they take."""
    from scnn.engine import synapses

    return _overridden(synapses.SPARSE_TRAINING, enabled, max_density, min_rows)


def sparse_conv_training(enabled: bool = True, max_density: float | None = None, min_rows: int | None = None,
                         max_forward_density: float | None = None):
    """Within the block, turn the event-driven training products of spike-fed convolutions on or off
    (:data:`scnn.engine.synapses.SPARSE_CONV_TRAINING`, :mod:`scnn.engine.sparse_conv`), or move their
    density thresholds (``max_density``: the weight gradient, and the forward too unless
    ``max_forward_density`` is given) or the fewest rows (T * B) they take."""
    from scnn.engine import synapses

    return _overridden(synapses.SPARSE_CONV_TRAINING, enabled, max_density, min_rows, max_forward_density)


def _kernels_can_run(tensor: torch.Tensor) -> bool:
    """CPU float32, numba present, and nobody tracing the model (fvcore's FLOP count traces it
    and must see every layer)."""
    return (tensor.device.type == "cpu" and tensor.dtype == torch.float32 and not torch.jit.is_tracing()
            and spike_kernels.available())


def _patterns_fit(steps: int) -> bool:
    """Enough steps for the grouped product to beat a dense one, and few enough for a uint64 code."""
    return _SETTINGS["min_pattern_steps"] <= steps <= spike_kernels.MAX_PATTERN_STEPS


def fast_inference_applies(tensor: torch.Tensor) -> bool:
    """Whether the compiled inference paths may run on ``tensor``: enabled, no gradients, and
    :func:`_kernels_can_run`."""
    return _SETTINGS["enabled"] and not torch.is_grad_enabled() and _kernels_can_run(tensor)


def observed(*modules: nn.Module) -> bool:
    """Whether forward hooks would see these modules run (then they must not be bypassed)."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for module in modules for m in module.modules())


def dense_synapse(block: nn.Module) -> nn.Linear | None:
    """The nn.Linear of a block whose current is just that product (no pooling, dropout idle), else None."""
    module = block.synapse
    if type(module) is nn.Sequential and len(module) == 2 and type(module[0]) is nn.Flatten:
        module = module[1]
    # Exact types: a quantised subclass (Brevitas' QuantLinear) must keep its own forward.
    if type(module) is not nn.Linear or not isinstance(block.pool, nn.Identity):
        return None
    if block.training and not isinstance(block.dropout, nn.Identity):
        return None
    return module


def grouped_training_applies(lif: nn.Module, static: torch.Tensor, steps: int, following: nn.Module) -> bool:
    """Whether the first neuron (static input ``[B, ...]``) and the dense block after it train as
    one grouped product (:class:`scnn.engine.synapses.StaticLifLinearFunction`): a first-order LIF
    on the fused path with fixed beta and threshold (``lif.lif_parameters()``)."""
    if not (_SETTINGS["grouped_training"] and torch.is_grad_enabled()):
        return False
    parameters = lif.lif_parameters()
    return (parameters is not None and parameters.fused and not parameters.learnable and _kernels_can_run(static)
            and _patterns_fit(steps) and dense_synapse(following) is not None
            and not observed(lif, following.synapse))


def static_lif_into_dense_training(lif: nn.Module, static: torch.Tensor, steps: int,
                                   following: nn.Module) -> torch.Tensor:
    """Current ``[T, B, M]`` of the dense block after the first LIF, in training (see
    :func:`grouped_training_applies`); the LIF's spikes are never materialised."""
    from scnn.engine.synapses import StaticLifLinearFunction

    linear = dense_synapse(following)
    lif_parameters = lif.lif_parameters()
    return StaticLifLinearFunction.apply(static, linear.weight, linear.bias, lif_parameters.beta.clamp(0, 1),
                                         lif_parameters.threshold, lif_parameters.slope,
                                         lif_parameters.reset_to_zero, steps)


def lif_into_dense(lif: nn.Module, current: torch.Tensor,
                   following: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A hidden LIF layer and the dense block after it, fused on a compiled path.

    current: the LIF's input ``[T, B, ...]`` (an expanded view with stride 0 over T when the
    input is static). Returns ``(None, next current [T, B, M])`` when the fused path ran,
    ``(spikes, None)`` when the spikes came out denser than ``max_density`` (the caller
    feeds them to the dense product), or ``(None, None)`` when no path applies (see
    :func:`fast_inference_applies`, :func:`dense_synapse`, hooks, a small layer).
    """
    steps = current.shape[0]
    if steps < 2 or not fast_inference_applies(current):
        return None, None  # one step: nothing to fuse over time, and the dense product is small
    linear = dense_synapse(following)
    lif_parameters = lif.lif_parameters()
    if linear is None or lif_parameters is None or observed(lif, following.synapse):
        return None, None
    beta, threshold = lif_parameters.beta.clamp(0, 1), lif_parameters.threshold
    reset_to_zero = lif_parameters.reset_to_zero
    if current.stride(0) == 0:  # static input: the grouped product, once there are enough steps
        if not _patterns_fit(steps):
            return None, None
        return None, spike_kernels.static_lif_linear(current[0], steps, beta, threshold, reset_to_zero,
                                                     linear.weight, linear.bias)
    if linear.weight.numel() < _SETTINGS["min_csr_weights"]:
        return None, None
    return spike_kernels.lif_csr_linear(current, beta, threshold, reset_to_zero, linear.weight, linear.bias,
                                        _SETTINGS["max_density"])


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
