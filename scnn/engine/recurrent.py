"""Fused multi-step sequences of the second-order, adaptive and recurrent LIF neurons.

Each class is a custom autograd function over a whole ``[T, B, ...]`` sequence, as
:class:`scnn.engine.lif.FusedLeakySequence` is for the first-order LIF: the forward writes
into preallocated ``[T, ...]`` buffers with in-place operations (no autograd graph of ~10
nodes per step), the backward is hand-written BPTT, vectorised over T wherever the
recurrence allows. Equations (and what they are bit-identical to) in each class.

``FusedSynapticSequence``   ``snntorch.Synaptic`` (:mod:`scnn.neurons.synaptic`)
``FusedALIFSequence``       the ALIF of :mod:`scnn.neurons.alif` (Bellec et al. 2018)
``FusedRLeakySequence``     ``snntorch.RLeaky``, one-to-one (``S * V``) or all-to-all
                            (``Linear`` or ``Conv2d`` of the previous step's spikes)

Forward values: each step does the same float32 operations in the same order as the
neuron's step loop (and snntorch), so spikes and membranes are identical given the same
inputs (tested); products of a spike (0 or 1) with a number are exact, which is why those
(and only those) are written as ``addcmul``. Gradients: the fast-sigmoid surrogate
``dS/dU = 1 / (slope * |U - thr| + 1)^2``, the reset ``S[t-1]`` detached (as snntorch's),
parameters clamped as the neurons clamp them (no gradient outside the range).

This module knows tensors, not neuron modules: the engine never imports :mod:`scnn.neurons`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scnn.engine.lif import _sum_to_shape, reverse_recurrence

RECURRENCES = ("one_to_one", "linear", "conv2d")
SEQUENCE_ENGINES = ("fused", "loop")


def check_engine(engine: str, surrogate: str) -> str:
    """The engine a neuron of this module runs: "fused" (its fused sequence, which implements the
    fast-sigmoid surrogate only, so any other surrogate gets "loop") or "loop" (the step loop)."""
    if engine not in SEQUENCE_ENGINES:
        raise ValueError(f"engine must be one of {SEQUENCE_ENGINES}, got {engine!r}")
    return engine if surrogate == "fast_sigmoid" else "loop"


def fused_sequence_applies(engine: str, current: torch.Tensor) -> bool:
    """Whether a neuron with ``engine`` runs ``current [T, B, ...]`` through its fused sequence:
    floating point on the CPU or CUDA (other devices and dtypes take the step loop)."""
    return (engine == "fused" and current.is_floating_point() and current.device.type in ("cpu", "cuda")
            and current.dim() >= 2)


def _surrogate_factor(membranes: torch.Tensor, threshold: torch.Tensor, slope: float) -> torch.Tensor:
    """dS/dU = 1 / (slope * |U - thr| + 1)^2 over the whole sequence, a new ``[T, ...]`` tensor."""
    return torch.sub(membranes, threshold).abs_().mul_(slope).add_(1.0).square_().reciprocal_()


def _inside(value: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
    """1 where ``clamp(value, low, high)`` passes a gradient (``low <= value <= high``), else 0."""
    mask = torch.ones_like(value, dtype=torch.bool)
    if low is not None:
        mask &= value >= low
    if high is not None:
        mask &= value <= high
    return mask.to(value.dtype)


def _sequence_buffers(current: torch.Tensor, *parameters: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``count`` uninitialised ``[T, ...]`` buffers of the broadcast shape of the current and the parameters."""
    shape = torch.broadcast_shapes(current.shape[1:], *(p.shape for p in parameters))
    return [current.new_empty((current.shape[0], *shape)) for _ in range(count)]


# --------------------------------------------------------------------------- Synaptic


class FusedSynapticSequence(torch.autograd.Function):
    """``snntorch.Synaptic`` over a whole ``[T, ...]`` sequence with a hand-written backward.

    Forward (``I``: current ``[T, ...]``; ``Syn[-1] = U[-1] = S[-1] = 0``; a = clamp(alpha, 0, 1),
    b = clamp(beta, 0, 1); reset R[t] = S[t-1], detached)::

        Syn[t] = a * Syn[t-1] + I[t]                          (does not depend on the spikes)
        U[t]   = b * U[t-1] + Syn[t] - S[t-1] * thr           subtract
        U[t]   = (1 - S[t-1]) * (b * U[t-1] + Syn[t])         zero (Syn itself is not reset)
        S[t]   = H(U[t] - thr)

    Backward, two reverse linear recurrences with precomputed coefficients (one fused
    multiply-add a step each), the rest vectorised over T::

        gU[t]   = dL/dS[t] * dS/dU[t] + dL/dU[t] (direct) + gU[t+1] * dec[t+1]
                  dec[t] = b (subtract), b * (1 - S[t-1]) (zero)
        gB[t]   = gU[t] (subtract), gU[t] * (1 - S[t-1]) (zero)       (dL/d of what U sums)
        gSyn[t] = gB[t] + a * gSyn[t+1];   dL/dI[t] = gSyn[t]
        dL/dalpha = sum gSyn[t] Syn[t-1];  dL/dbeta = sum gB[t] U[t-1]
        dL/dthr = -sum dL/dS dS/dU  - sum gU[t] S[t-1] (subtract only)
    """

    @staticmethod
    def forward(ctx, current, alpha, beta, threshold, slope: float, reset_to_zero: bool):
        ctx.set_materialize_grads(False)
        ctx.slope, ctx.reset_to_zero = slope, reset_to_zero
        alpha_c, beta_c = alpha.clamp(0, 1), beta.clamp(0, 1)
        synaptic, membranes, spikes = _sequence_buffers(current, alpha, beta, threshold, count=3)
        synaptic[0].copy_(current[0])  # a * 0 + I[0]
        # views by step: a tuple lookup instead of a tensor index (~1 us) at every use
        synaptic_t = synaptic.unbind(0)
        current_t = current.unbind(0)
        for step in range(1, current.shape[0]):  # the filter first: no spike enters it
            torch.mul(synaptic_t[step - 1], alpha_c, out=synaptic_t[step])
            synaptic_t[step].add_(current_t[step])
        membranes[0].copy_(synaptic[0])  # b * 0 + Syn[0] - 0 * thr
        torch.gt(membranes[0], threshold, out=spikes[0])
        # views by step: a tuple lookup instead of a tensor index (~1 us) at every use
        membranes_t = membranes.unbind(0)
        spikes_t = spikes.unbind(0)
        for step in range(1, current.shape[0]):
            membrane = membranes_t[step]
            torch.mul(membranes_t[step - 1], beta_c, out=membrane)
            membrane.add_(synaptic_t[step])
            if reset_to_zero:
                membrane.addcmul_(membrane, spikes_t[step - 1], value=-1)  # x - x * S: 0 or x, exactly
            else:
                membrane.addcmul_(spikes_t[step - 1], threshold, value=-1)
            torch.gt(membrane, threshold, out=spikes_t[step])
        if any(ctx.needs_input_grad[:4]):  # (inference: nothing to keep)
            ctx.save_for_backward(membranes, spikes.to(torch.bool),
                                  synaptic if ctx.needs_input_grad[1] else None, alpha, beta, threshold)
        return spikes, membranes

    @staticmethod
    def backward(ctx, grad_spikes, grad_membranes):
        membranes, spikes, synaptic, alpha, beta, threshold = ctx.saved_tensors
        spikes = spikes.to(membranes.dtype)
        alpha_c, beta_c = alpha.clamp(0, 1), beta.clamp(0, 1)
        need_alpha, need_beta, need_threshold = ctx.needs_input_grad[1:4]
        if grad_spikes is not None:
            grad_u = grad_spikes * _surrogate_factor(membranes, threshold, ctx.slope)
        else:
            grad_u = torch.zeros_like(membranes)
        grad_threshold = -_sum_to_shape(grad_u, threshold.shape) if need_threshold else None
        if grad_membranes is not None:
            grad_u.add_(grad_membranes)
        kept = 1 - spikes[:-1]  # 1 - S[t-1] for t >= 1
        reverse_recurrence(grad_u, kept * beta_c if ctx.reset_to_zero else beta_c)
        if ctx.reset_to_zero:
            grad_base = grad_u.clone()
            grad_base[1:].mul_(kept)
        else:
            grad_base = grad_u
            if need_threshold:
                grad_threshold = grad_threshold - _sum_to_shape(grad_u[1:] * spikes[:-1], threshold.shape)
        grad_beta = None
        if need_beta:
            grad_beta = _sum_to_shape(grad_base[1:] * membranes[:-1], beta.shape) * _inside(beta, 0, 1)
        grad_synaptic = grad_base  # gU and gB are read no more: the filter's recurrence runs in place
        reverse_recurrence(grad_synaptic, alpha_c)
        grad_alpha = None
        if need_alpha:
            grad_alpha = _sum_to_shape(grad_synaptic[1:] * synaptic[:-1], alpha.shape) * _inside(alpha, 0, 1)
        return grad_synaptic, grad_alpha, grad_beta, grad_threshold, None, None


# --------------------------------------------------------------------------- ALIF


class FusedALIFSequence(torch.autograd.Function):
    """The adaptive LIF of :mod:`scnn.neurons.alif` (Bellec et al. 2018) over a whole sequence.

    Forward (``U[-1] = A[-1] = S[-1] = 0``; b = clamp(beta, 0, 1), r = clamp(rho, 0, 1),
    k = max(adaptation, 0); the reset S[t-1] detached, the adaptation's S[t-1] not)::

        A[t] = r * A[t-1] + (1 - r) * S[t-1]
        B[t] = thr + k * A[t]                                 adaptive threshold
        U[t] = b * U[t-1] + I[t] - S[t-1] * B[t]              subtract
        U[t] = b * (1 - S[t-1]) * U[t-1] + I[t]               zero
        S[t] = H(U[t] - B[t])

    Backward: the adaptation carries gradient from each spike to every later threshold, so
    gU, gA and the spike gradient form one coupled reverse recurrence: six (subtract) or five (zero) in-place
    operations a step, on precomputed surrogate factors (h = U - B)::

        gh[t] = dS/dh[t] * (dL/dS[t] + (1 - r) * gA[t+1])
        gU[t] = gh[t] + dL/dU[t] (direct) + dec[t+1] * gU[t+1]   dec = b, b * (1 - S[t-1]) (zero)
        gB[t] = -gh[t] - S[t-1] * gU[t] (subtract) or -gh[t] (zero)
        gA[t] = k * gB[t] + r * gA[t+1]
        dL/dI = gU;  dL/dthr = sum gB;  dL/dk = sum gB A;  dL/dr = sum gA[t] (A[t-1] - S[t-1]);
        dL/dbeta = sum gU[t] U[t-1] (times 1 - S[t-1] for zero)
    """

    @staticmethod
    def forward(ctx, current, beta, threshold, rho, adaptation, slope: float, reset_to_zero: bool):
        ctx.set_materialize_grads(False)
        ctx.slope, ctx.reset_to_zero = slope, reset_to_zero
        beta_c, rho_c, gain = beta.clamp(0, 1), rho.clamp(0, 1), adaptation.clamp(min=0)
        one_minus_rho = 1 - rho_c
        membranes, spikes, adapt, thresholds = _sequence_buffers(current, beta, threshold, rho, adaptation, count=4)
        # views by step: a tuple lookup instead of a tensor index (~1 us) at every use
        membranes_t = membranes.unbind(0)
        adapt_t = adapt.unbind(0)
        thresholds_t = thresholds.unbind(0)
        spikes_t = spikes.unbind(0)
        current_t = current.unbind(0)
        for step in range(current.shape[0]):
            membrane, level, limit = membranes_t[step], adapt_t[step], thresholds_t[step]
            if step == 0:
                level.zero_()  # r * 0 + (1 - r) * 0
                membrane.copy_(current[0])  # b * 0 + I[0] - 0 * B[0]
            else:
                previous = spikes_t[step - 1]
                torch.mul(adapt_t[step - 1], rho_c, out=level)
                level.addcmul_(previous, one_minus_rho)  # (1 - r) * S: exact
            torch.mul(level, gain, out=limit)
            limit.add_(threshold)  # thr + k * A
            if step > 0:
                torch.mul(membranes_t[step - 1], beta_c, out=membrane)
                if reset_to_zero:
                    membrane.addcmul_(membrane, previous, value=-1)  # x - x * S: 0 or x, exactly
                    membrane.add_(current_t[step])
                else:
                    membrane.add_(current_t[step])
                    membrane.addcmul_(previous, limit, value=-1)  # - S * B: exact
            torch.gt(membrane, limit, out=spikes_t[step])
        if any(ctx.needs_input_grad[:5]):  # (inference: nothing to keep)
            ctx.save_for_backward(membranes, spikes.to(torch.bool), adapt, thresholds, beta, rho, adaptation,
                                  threshold)
        return spikes, membranes

    @staticmethod
    def backward(ctx, grad_spikes, grad_membranes):
        membranes, spikes, adapt, thresholds, beta, rho, adaptation, threshold = ctx.saved_tensors
        spikes = spikes.to(membranes.dtype)
        beta_c, rho_c, gain = beta.clamp(0, 1), rho.clamp(0, 1), adaptation.clamp(min=0)
        need_beta, need_threshold, need_rho, need_adaptation = ctx.needs_input_grad[1:5]
        steps, zero = membranes.shape[0], ctx.reset_to_zero
        surrogate = _surrogate_factor(membranes, thresholds, ctx.slope)
        # gh starts as dS/dh * dL/dS (vectorised); the loop adds the adaptation's share.
        grad_h = grad_spikes * surrogate if grad_spikes is not None else torch.zeros_like(membranes)
        adapt_factor = surrogate.mul_(1 - rho_c)  # dS/dh * (1 - r), in the surrogate's buffer
        grad_u = grad_membranes.clone() if grad_membranes is not None else torch.zeros_like(membranes)
        decay = (1 - spikes[:-1]).mul_(beta_c) if zero else None  # dec[t + 1] = b * (1 - S[t])
        # The loop keeps -gB = gh + S[t-1] gU (subtract) or gh itself (zero): one operation a step
        # fewer than gB; gA[t] = -k (-gB[t]) + r gA[t+1].
        negated_limit = grad_h if zero else torch.empty_like(membranes)
        grad_adapt, negative_gain = torch.empty_like(membranes), -gain
        # views by step: a tuple lookup instead of a tensor index (~1 us) at every use
        grad_h_t, grad_u_t, grad_adapt_t = grad_h.unbind(0), grad_u.unbind(0), grad_adapt.unbind(0)
        adapt_factor_t, negated_limit_t, spikes_t = adapt_factor.unbind(0), negated_limit.unbind(0), spikes.unbind(0)
        decay_t = decay.unbind(0) if zero else None
        for step in range(steps - 1, -1, -1):
            if step < steps - 1:
                grad_h_t[step].addcmul_(adapt_factor_t[step], grad_adapt_t[step + 1])
                grad_u_t[step].addcmul_(grad_u_t[step + 1], decay_t[step] if zero else beta_c)
            grad_u_t[step].add_(grad_h_t[step])
            if not zero:
                if step > 0:
                    torch.addcmul(grad_h_t[step], spikes_t[step - 1], grad_u_t[step], out=negated_limit_t[step])
                else:
                    negated_limit_t[0].copy_(grad_h_t[0])
            torch.mul(negated_limit_t[step], negative_gain, out=grad_adapt_t[step])
            if step < steps - 1:
                grad_adapt_t[step].addcmul_(grad_adapt_t[step + 1], rho_c)
        grad_limit = negated_limit.neg() if need_threshold or need_adaptation else None  # gB = dL/dB
        grad_beta = grad_threshold = grad_rho = grad_adaptation = None
        if need_beta:
            kept = membranes[:-1] * (1 - spikes[:-1]) if zero else membranes[:-1]
            grad_beta = _sum_to_shape(grad_u[1:] * kept, beta.shape) * _inside(beta, 0, 1)
        if need_threshold:
            grad_threshold = _sum_to_shape(grad_limit, threshold.shape)
        if need_adaptation:
            grad_adaptation = _sum_to_shape(grad_limit * adapt, adaptation.shape) * _inside(adaptation, 0, None)
        if need_rho:
            grad_rho = _sum_to_shape(grad_adapt[1:] * (adapt[:-1] - spikes[:-1]), rho.shape) * _inside(rho, 0, 1)
        return grad_u, grad_beta, grad_threshold, grad_rho, grad_adaptation, None, None


# --------------------------------------------------------------------------- RLeaky


def _recurrent_input(kind: str, spikes: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     padding: int, out: torch.Tensor | None) -> torch.Tensor:
    """W_rec(S) of one step ``[B, ...]``, computed as snntorch's recurrent module does (same kernel)."""
    if kind == "linear":
        if bias is None:
            return torch.mm(spikes, weight.t(), out=out)
        return torch.addmm(bias, spikes, weight.t(), out=out)  # what F.linear calls for 2-D input
    return F.conv2d(spikes, weight, bias, padding=padding)


def _recurrent_input_gradient(kind: str, grad: torch.Tensor, weight: torch.Tensor, shape: torch.Size,
                              padding: int, out: torch.Tensor | None) -> torch.Tensor:
    """dL/dS of one step from dL/dW_rec(S) ``grad``: ``grad @ W`` or the transposed convolution."""
    if kind == "linear":
        return torch.mm(grad, weight, out=out)
    return torch.nn.grad.conv2d_input(shape, weight, grad, padding=padding)


class FusedRLeakySequence(torch.autograd.Function):
    """``snntorch.RLeaky`` over a whole ``[T, ...]`` sequence with a hand-written backward.

    Forward (``U[-1] = S[-1] = 0``; b = clamp(beta, 0, 1); reset R[t] = S[t-1] detached; the
    recurrent input W(S[t-1]) is not detached)::

        base[t] = b * U[t-1] + I[t] + W(S[t-1])
        U[t] = base[t] - S[t-1] * thr            subtract
        U[t] = (1 - S[t-1]) * base[t]            zero
        S[t] = H(U[t] - thr)

    ``kind``: ``one_to_one`` W(S) = S * V (``weight`` = V, elementwise); ``linear`` W(S) =
    S @ W.T + bias on ``[B, N]``; ``conv2d`` W(S) = conv2d(S, W, bias, padding) on ``[B, C, H, W]``.
    The recurrent product of all-to-all weights needs the previous step's spikes, so it
    stays one product a step (into a preallocated buffer for ``linear``).

    Backward, with gB[t] = dL/dbase[t] = gU[t] (subtract) or gU[t] (1 - S[t-1]) (zero)::

        dL/dS[t] = dL/dS[t] (direct) + W^T(gB[t+1])             recurrent share
        gU[t]    = dS/dU[t] * dL/dS[t] + dL/dU[t] (direct) + b * gB[t+1]
        dL/dI[t] = gB[t];  dL/dbeta = sum gB[t] U[t-1];  dL/dV = sum gB[t] S[t-1]  (one-to-one)
        dL/dW    = sum_t gB[t+1]^T S[t]   (linear: one product over all T B rows at the end;
                                           conv2d: one weight gradient with T folded into the batch)
        dL/dbias = sum_t gB[t];  dL/dthr = -sum dS/dU dL/dS - sum gU[t] S[t-1] (subtract only)

    One-to-one: W^T(g) = V g is elementwise, so gU[t] = a[t] + c[t] gU[t+1] with precomputed
    a, c — one fused multiply-add a step (vectorised otherwise). All-to-all: a loop of one
    product and four in-place operations a step.
    """

    @staticmethod
    def forward(ctx, current, beta, threshold, weight, bias, slope: float, reset_to_zero: bool, kind: str,
                padding: int = 0):
        if kind not in RECURRENCES:
            raise ValueError(f"recurrence kind must be one of {RECURRENCES}, got {kind!r}")
        if kind == "linear" and current.dim() != 3:
            raise ValueError(f"all-to-all dense recurrence takes current [T, B, N], got {tuple(current.shape)}")
        if kind == "conv2d" and current.dim() != 5:
            raise ValueError(f"all-to-all conv recurrence takes current [T, B, C, H, W], got {tuple(current.shape)}")
        ctx.set_materialize_grads(False)
        ctx.slope, ctx.reset_to_zero, ctx.kind, ctx.padding = slope, reset_to_zero, kind, padding
        beta_c = beta.clamp(0, 1)
        extra = (weight,) if kind == "one_to_one" else ()
        membranes, spikes = _sequence_buffers(current, beta, threshold, *extra, count=2)
        scratch = torch.empty_like(membranes[0]) if kind == "linear" else None
        # views by step: a tuple lookup instead of a tensor index (~1 us) at every use
        membranes_t = membranes.unbind(0)
        spikes_t = spikes.unbind(0)
        current_t = current.unbind(0)
        for step in range(current.shape[0]):
            membrane = membranes_t[step]
            if step == 0:
                membrane.copy_(current[0])  # b * 0 + I[0]
                if kind != "one_to_one" and bias is not None:  # W(0) = bias
                    membrane.add_(bias.view(-1, 1, 1) if kind == "conv2d" else bias)
            else:
                previous = spikes_t[step - 1]
                torch.mul(membranes_t[step - 1], beta_c, out=membrane)
                membrane.add_(current_t[step])
                if kind == "one_to_one":
                    membrane.addcmul_(previous, weight)  # S * V: exact
                else:
                    membrane.add_(_recurrent_input(kind, previous, weight, bias, padding, scratch))
                if reset_to_zero:
                    membrane.addcmul_(membrane, previous, value=-1)  # x - x * S: 0 or x, exactly
                else:
                    membrane.addcmul_(previous, threshold, value=-1)
            torch.gt(membrane, threshold, out=spikes_t[step])
        if any(ctx.needs_input_grad[:5]):  # (inference: nothing to keep)
            ctx.save_for_backward(membranes, spikes.to(torch.bool), beta, threshold, weight)
        return spikes, membranes

    @staticmethod
    def backward(ctx, grad_spikes, grad_membranes):
        membranes, spikes, beta, threshold, weight = ctx.saved_tensors
        spikes = spikes.to(membranes.dtype)
        kind, zero, steps = ctx.kind, ctx.reset_to_zero, membranes.shape[0]
        beta_c = beta.clamp(0, 1)
        need_beta, need_threshold, need_weight, need_bias = ctx.needs_input_grad[1:5]
        surrogate = _surrogate_factor(membranes, threshold, ctx.slope)
        # gh = dS/dU * dL/dS (total): the direct share now, the recurrent share below.
        grad_h = grad_spikes * surrogate if grad_spikes is not None else torch.zeros_like(membranes)
        kept = 1 - spikes[:-1]  # 1 - S[t-1] for t >= 1
        if kind == "one_to_one":
            # gU[t] = gh[t] + dL/dU[t] + (dS/dU[t] V + b) m[t+1] gU[t+1], m = 1 or 1 - S[t]
            grad_u = grad_h + grad_membranes if grad_membranes is not None else grad_h.clone()
            coefficient = surrogate[:-1] * weight + beta_c
            if zero:
                coefficient = coefficient * kept
            reverse_recurrence(grad_u, coefficient)
            grad_base = grad_u.clone() if zero else grad_u
            if zero:
                grad_base[1:].mul_(kept)
            if steps > 1:
                grad_h[:-1].add_(surrogate[:-1] * weight * grad_base[1:])
        else:
            grad_u = grad_membranes.clone() if grad_membranes is not None else torch.zeros_like(membranes)
            grad_base = torch.empty_like(membranes) if zero else grad_u
            scratch = torch.empty_like(membranes[0]) if kind == "linear" else None
            # views by step: a tuple lookup instead of a tensor index (~1 us) at every use
            grad_base_t = grad_base.unbind(0)
            spikes_t = spikes.unbind(0)
            grad_h_t = grad_h.unbind(0)
            surrogate_t = surrogate.unbind(0)
            grad_u_t = grad_u.unbind(0)
            kept_t = kept.unbind(0)
            for step in range(steps - 1, -1, -1):
                if step < steps - 1:
                    later = grad_base_t[step + 1]
                    recurrent = _recurrent_input_gradient(kind, later, weight, spikes_t[step].shape, ctx.padding,
                                                          scratch)
                    grad_h_t[step].addcmul_(surrogate_t[step], recurrent)
                    grad_u_t[step].addcmul_(later, beta_c)
                grad_u_t[step].add_(grad_h_t[step])
                if zero:
                    if step > 0:
                        torch.mul(grad_u_t[step], kept_t[step - 1], out=grad_base_t[step])
                    else:
                        grad_base[0].copy_(grad_u[0])
        grad_beta = grad_threshold = grad_weight = grad_bias = None
        if need_beta:
            grad_beta = _sum_to_shape(grad_base[1:] * membranes[:-1], beta.shape) * _inside(beta, 0, 1)
        if need_threshold:
            grad_threshold = -_sum_to_shape(grad_h, threshold.shape)
            if not zero:
                grad_threshold = grad_threshold - _sum_to_shape(grad_u[1:] * spikes[:-1], threshold.shape)
        if need_weight:
            if steps == 1:
                grad_weight = torch.zeros_like(weight)
            elif kind == "one_to_one":
                grad_weight = _sum_to_shape(grad_base[1:] * spikes[:-1], weight.shape)
            elif kind == "linear":
                features = weight.shape[1]
                grad_weight = grad_base[1:].reshape(-1, features).t().mm(spikes[:-1].reshape(-1, features))
            else:
                folded = spikes[:-1].reshape(-1, *spikes.shape[2:])
                grad_weight = torch.nn.grad.conv2d_weight(folded, weight.shape,
                                                          grad_base[1:].reshape(-1, *grad_base.shape[2:]),
                                                          padding=ctx.padding)
        if need_bias:
            dims = (0, 1, 3, 4) if kind == "conv2d" else (0, 1)
            grad_bias = grad_base.sum(dim=dims)
        return grad_base, grad_beta, grad_threshold, grad_weight, grad_bias, None, None, None, None
