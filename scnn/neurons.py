"""Leaky integrate-and-fire neurons with ``snntorch.Leaky`` as their definition.

The neuron (snntorch's ``Leaky``, reset delayed by one step, its default)::

    R[t] = H(U[t-1] - U_thr)                  reset signal, detached from the graph
    U[t] = clamp(beta, 0, 1) * U[t-1] + I[t] - R[t] * U_thr      reset_mechanism="subtract"
    U[t] = clamp(beta, 0, 1) * (1 - R[t]) * U[t-1] + I[t]         reset_mechanism="zero"
    S[t] = H(U[t] - U_thr)                    forward: Heaviside; backward: surrogate

with U[-1] = 0. ``beta`` (leak, 0..1) and ``threshold`` (U_thr > 0) are scalars or
one value per channel, fixed or learnable.

Two data formats, as in SpikingJelly: multi-step ``[T, B, ...]`` (``forward``), the
whole sequence from a zero state, and single-step ``[B, ...]`` (``step``), which
keeps the membrane between calls for streaming until :func:`reset_net`.
"""

from __future__ import annotations

import torch
from torch import nn

import snntorch
from snntorch import surrogate as snn_surrogate

from scnn import engine, spike_kernels

SURROGATES = ("fast_sigmoid", "atan", "sigmoid")
RESET_MECHANISMS = ("subtract", "zero")
ENGINES = ("fused", "snntorch")


def make_surrogate(name: str = "fast_sigmoid", slope: float = 25.0):
    """snntorch surrogate-gradient spike function by name.

    fast_sigmoid: d S/dU = 1 / (slope * |U - U_thr| + 1)^2 (snntorch's default slope 25);
    atan: alpha = slope; sigmoid: slope as given.
    """
    if name == "fast_sigmoid":
        return snn_surrogate.fast_sigmoid(slope=slope)
    if name == "atan":
        return snn_surrogate.atan(alpha=slope)
    if name == "sigmoid":
        return snn_surrogate.sigmoid(slope=slope)
    raise ValueError(f"unknown surrogate {name!r}; choose one of {SURROGATES}")


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
        # (The compiled loops of scnn.spike_kernels, used in inference, made training slower
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


class LIF(nn.Module):
    """Leaky integrate-and-fire layer (see the module docstring for the equations).

    Args:
        beta: membrane decay per step, clamped to [0, 1] when applied.
        threshold: firing threshold U_thr (> 0).
        surrogate, slope: surrogate gradient of the spike (see :func:`make_surrogate`).
        reset_mechanism: "subtract" (U -= U_thr after a spike) or "zero".
        learn_beta, learn_threshold: make them trainable parameters.
        num_channels: if given, one beta per channel (dimension 1 of ``[B, C, ...]``).
        channel_dims: trailing dimensions after the channel (2 for conv maps, 0 for FC).
        engine: "fused" runs a whole sequence in :class:`FusedLeakySequence` (fast-sigmoid
            surrogate only; other surrogates fall back); "snntorch" steps ``snntorch.Leaky``.
            Both give the same spikes and membranes (tested).
    """

    def __init__(
        self,
        beta: float = 0.5,
        threshold: float = 1.0,
        surrogate: str = "fast_sigmoid",
        slope: float = 25.0,
        reset_mechanism: str = "subtract",
        learn_beta: bool = False,
        learn_threshold: bool = False,
        num_channels: int | None = None,
        channel_dims: int = 0,
        engine: str = "fused",
    ):
        super().__init__()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        # The fused sequence implements the fast-sigmoid surrogate; any other runs snntorch's loop.
        self.engine = engine if surrogate == "fast_sigmoid" else "snntorch"
        self.slope = float(slope)
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
        if not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        if float(threshold) <= 0.0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        beta_tensor = torch.tensor(float(beta))
        if num_channels is not None:
            beta_tensor = beta_tensor.repeat(num_channels).reshape(num_channels, *([1] * channel_dims))
        self.leaky = snntorch.Leaky(
            beta=beta_tensor,
            threshold=float(threshold),
            spike_grad=make_surrogate(surrogate, slope),
            reset_mechanism=reset_mechanism,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
        )
        self.membrane: torch.Tensor | None = None  # single-step state [B, ...]

    @property
    def beta(self) -> torch.Tensor:
        return self.leaky.beta

    @property
    def threshold(self) -> torch.Tensor:
        return self.leaky.threshold

    def forward(self, current: torch.Tensor, return_membrane: bool = True,
                overwrite_current: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run a whole sequence from a zero state.

        current: input current ``[T, B, ...]``. Returns (spikes, membrane), both ``[T, B, ...]``;
        membrane is None if not ``return_membrane`` (hidden layers: the fused engine then
        reuses the membrane buffer for its backward pass). ``overwrite_current``: the caller
        will not read ``current`` again, so the fused engine may keep the membranes in it.
        Inference on the CPU (more than one step) runs the compiled
        :func:`scnn.spike_kernels.lif_spikes`: the same values.
        """
        reset_to_zero = self.leaky.reset_mechanism == "zero"
        if current.shape[0] > 1 and engine.fast_inference_applies(current):  # any surrogate: same forward
            return spike_kernels.lif_spikes(current, self.leaky.beta.clamp(0, 1), self.leaky.threshold,
                                            reset_to_zero, return_membrane)
        if self.engine == "fused":
            outputs = FusedLeakySequence.apply(current, self.leaky.beta, self.leaky.threshold, self.slope,
                                               reset_to_zero, return_membrane, overwrite_current)
            return outputs if return_membrane else (outputs, None)
        membrane = torch.zeros_like(current[0])
        spikes, membranes = [], []
        for current_t in current:
            spike, membrane = self.leaky(current_t, membrane)
            spikes.append(spike)
            membranes.append(membrane)
        return torch.stack(spikes), torch.stack(membranes) if return_membrane else None

    def step(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one time step. current ``[B, ...]``; returns (spike, membrane) ``[B, ...]``."""
        if self.membrane is None or self.membrane.shape != current.shape:
            self.membrane = torch.zeros_like(current)
        spike, self.membrane = self.leaky(current, self.membrane)
        return spike, self.membrane

    def reset(self) -> None:
        """Forget the single-step state."""
        self.membrane = None


def reset_net(model: nn.Module) -> None:
    """Reset the single-step state of every neuron in ``model`` (one call, not one per layer)."""
    for module in model.modules():
        if isinstance(module, LIF):
            module.reset()
