"""The fused multi-step LIF: ``snntorch.Leaky`` over a whole ``[T, ...]`` sequence with a
hand-written backward, and the BPTT pieces the spike synapses share with it.

This module knows tensors, not neuron modules: :mod:`scnn.neurons` picks these kernels,
the engine never imports a neuron.
"""

from __future__ import annotations

import torch


def _sum_to_shape(gradient: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to a parameter's shape (e.g. ``[B, C, H, W]`` -> ``[C, 1, 1]``)."""
    if gradient.shape == shape:
        return gradient
    extra = gradient.dim() - len(shape)
    gradient = gradient.sum(dim=tuple(range(extra))) if extra > 0 else gradient
    dims = tuple(i for i, size in enumerate(shape) if size == 1 and gradient.shape[i] != 1)
    return gradient.sum(dim=dims, keepdim=True) if dims else gradient



def surrogate_gradient(membranes: torch.Tensor, grad_spikes: torch.Tensor, threshold: torch.Tensor, slope: float,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """dL/dS * dS/dU with the fast sigmoid, dS/dU = 1 / (slope * |U - thr| + 1)^2, ``[T, ...]``;
    ``out`` may be ``membranes`` itself (the surrogate then overwrites them)."""
    result = torch.sub(membranes, threshold, out=out)
    result.abs_().mul_(slope).add_(1.0).square_()
    return torch.div(grad_spikes, result, out=result)



def reverse_recurrence(grad_total: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """BPTT through the leak, in place: g[t] += g[t+1] * decay[t+1] for t = T-2 .. 0.

    decay: ``clamp(beta)`` (subtract reset) or ``[T-1, ...]`` = beta * (1 - S[t]) (zero reset).
    """
    for step in range(grad_total.shape[0] - 2, -1, -1):
        grad_total[step].addcmul_(grad_total[step + 1], decay[step] if decay.dim() == grad_total.dim() else decay)
    return grad_total



def _lif_loop(current: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, reset_to_zero: bool,
              keep_history: bool, in_place: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The forward of :class:`FusedLeakySequence`: spikes ``[T, ...]`` and membranes (None
    without ``keep_history``; ``current`` itself if ``in_place``), four in-place operations a step."""
    spikes = torch.empty_like(current, memory_format=torch.contiguous_format)
    if in_place:
        membranes, scratch = current, torch.empty_like(current[0])
        state = membranes[0]
    else:
        membranes = torch.empty_like(spikes) if keep_history else None
        state = membranes[0] if keep_history else torch.empty_like(spikes[0])
        state.copy_(current[0])  # beta * 0 + I[0] - 0 * thr
    torch.gt(state, threshold, out=spikes[0])
    for step in range(1, current.shape[0]):
        membrane = membranes[step] if keep_history else state
        decayed = scratch if in_place else membrane
        torch.mul(state, beta, out=decayed)
        if reset_to_zero:
            decayed.addcmul_(decayed, spikes[step - 1], value=-1)  # x - x * S: 0 or x, exactly
        membrane.add_(decayed if in_place else current[step])
        if not reset_to_zero:
            membrane.addcmul_(spikes[step - 1], threshold, value=-1)  # - S * thr: exact
        torch.gt(membrane, threshold, out=spikes[step])
        state = membrane
    return spikes, membranes



class FusedLeakySequence(torch.autograd.Function):
    """``snntorch.Leaky`` over a whole ``[T, ...]`` sequence with a hand-written backward.

    Forward (``I``: current ``[T, ...]``, ``U[-1] = 0``, ``S[-1] = 0``)::

        reset[t] = S[t-1] = H(U[t-1] - thr)                   (detached, as in snntorch)
        U[t] = clamp(beta, 0, 1) * U[t-1] + I[t] - S[t-1] * thr            subtract
        U[t] = clamp(beta, 0, 1) * ((1 - S[t-1]) * U[t-1]) + I[t]          zero
        S[t] = H(U[t] - thr),   dS/dU = 1 / (slope * |U - thr| + 1)^2      fast sigmoid

    Given the same currents the membranes are bit-identical to snntorch's: each step does
    the same float32 roundings in the same order (beta * U, then + I, then - S * thr; for
    the zero reset ``x - x * S`` is exactly ``0`` or ``x``, as ``beta * ((1 - S) * U)`` is),
    with four in-place operations on preallocated ``[T, ...]`` buffers instead of snntorch's
    ~12 allocating ones, and the reset is the previous step's spike instead of a second
    threshold comparison (the same value: ``U - thr > 0`` iff ``U > thr`` in IEEE floats).

    Backward (BPTT) runs on the saved membranes and spikes, vectorised over T except one
    fused multiply-add per step::

        g[t] = dL/dU[t] = dL/dS[t] * dS/dU[t] + dL/dU[t] (direct) + g[t+1] * decay[t+1]
        decay[t] = clamp(beta) (subtract),  clamp(beta) * (1 - S[t-1]) (zero)
        dL/dI[t] = g[t]
        dL/dbeta = sum_t g[t] * U[t-1] (subtract) or g[t] * (1 - S[t-1]) * U[t-1] (zero),
                   zero where beta lies outside [0, 1] (clamp passes no gradient there)
        dL/dthr = -sum_t dL/dS[t] * dS/dU[t]  -  sum_t g[t] * S[t-1] (subtract only)

    The reset is detached, as in snntorch, so no gradient flows through ``S[t-1]`` into
    the state. Per-channel ``beta``/``thr`` broadcast against ``[B, C, ...]``; their
    gradients are summed back to their shapes.

    Why not snntorch 1.0's parallel neurons: ``LeakyParallel`` (an ``nn.RNN`` with a ReLU
    and its own input weights) and ``StateLeaky`` (a closed-form decay convolution) both
    integrate without the spike reset, so they compute a different model, not a faster
    path to this one.
    """

    @staticmethod
    def forward(ctx, current, beta, threshold, slope: float, reset_to_zero: bool, return_membranes: bool = True,
                overwrite_current: bool = False):
        ctx.set_materialize_grads(False)
        ctx.slope, ctx.reset_to_zero, ctx.private_membranes = slope, reset_to_zero, not return_membranes
        beta_clamped = beta.clamp(0, 1)
        # Without a backward pass and with nobody reading them, the membranes need not be kept:
        # one [B, ...] state, rewritten in place every step, stays in cache (inference).
        keep_history = return_membranes or any(ctx.needs_input_grad[:3])
        # overwrite_current: the caller's current is a scratch buffer nobody reads again (a
        # synapse's output), so private membranes take its place: U[t] = (I[t] + beta * U[t-1]) - S * thr,
        # the same float32 values (addition commutes), one [T, ...] buffer less. The in-place
        # writes bump its version counter, so a backward pass that had saved it would fail loudly.
        in_place = (overwrite_current and not return_membranes and keep_history and current.is_contiguous()
                    and current.stride(0) != 0)
        # (The compiled loops of scnn.engine.kernels, used in inference, made training slower
        # here, forward alone 1-3 %, forward and backward 3-7 %, interleaved: numba's and
        # torch's OpenMP thread pools take turns on the two cores.)
        spikes, membranes = _lif_loop(current, beta_clamped, threshold, reset_to_zero, keep_history, in_place)
        # The backward pass reads the spikes only for the zero reset or a threshold gradient; as
        # bool they take a quarter of the float32 bytes (the next synapse keeps its own copy).
        needs_spikes = reset_to_zero or ctx.needs_input_grad[2]
        ctx.save_for_backward(membranes, spikes.to(torch.bool) if needs_spikes else None, beta, threshold)
        return (spikes, membranes) if return_membranes else spikes

    @staticmethod
    def backward(ctx, grad_spikes, grad_membranes=None):
        membranes, spikes, beta, threshold = ctx.saved_tensors
        spikes = spikes.to(membranes.dtype) if spikes is not None else None
        slope, reset_to_zero = ctx.slope, ctx.reset_to_zero
        beta_clamped = beta.clamp(0, 1)
        need_beta, need_threshold = ctx.needs_input_grad[1], ctx.needs_input_grad[2]

        # dL/dS * dS/dU, the surrogate written in place into one buffer: the membranes'
        # own when nobody else saw them (return_membranes=False) and beta needs no gradient,
        # which saves a [T, ...] buffer and its first touch (a version bump makes a second
        # backward through this graph fail loudly instead of reading the overwritten values).
        if grad_spikes is not None:
            reuse = ctx.private_membranes and not need_beta
            grad_total = surrogate_gradient(membranes, grad_spikes, threshold, slope, membranes if reuse else None)
        else:
            grad_total = torch.zeros_like(membranes)
        grad_threshold = None
        if need_threshold:
            grad_threshold = -_sum_to_shape(grad_total, threshold.shape)
        if grad_membranes is not None:
            grad_total.add_(grad_membranes)

        # Reverse recurrence, in place: g[t] += g[t+1] * decay[t+1].
        decay = (1 - spikes[:-1]).mul_(beta_clamped) if reset_to_zero else beta_clamped  # beta * (1 - S[t])
        reverse_recurrence(grad_total, decay)

        grad_beta = None
        if need_beta:
            kept = membranes[:-1] * (1 - spikes[:-1]) if reset_to_zero else membranes[:-1]  # what beta multiplies
            inside = ((beta >= 0) & (beta <= 1)).to(beta.dtype)
            grad_beta = _sum_to_shape(grad_total[1:] * kept, beta.shape) * inside
        if need_threshold and not reset_to_zero:
            grad_threshold = grad_threshold - _sum_to_shape(grad_total[1:] * spikes[:-1], threshold.shape)
        return grad_total, grad_beta, grad_threshold, None, None, None, None

