"""Dense and convolution layers fed by spikes that keep their input as bytes for the backward pass.

A synapse ``y = W x + b`` needs its input x again for the weight gradient
``dL/dW = dL/dy^T x``, so autograd keeps x alive from the forward to the backward pass.
Fed by a LIF layer, x is a ``[T*B, ...]`` tensor of 0/1 spikes in float32; kept as
``torch.bool`` it takes a quarter of the memory, and the backward pass turns it back into
float32 a chunk of rows at a time (at most ``CHUNK_BYTES`` of float32 at once), so the whole
float copy never exists twice. Same values exactly: 0/1 convert losslessly, and only the
summation order of the weight gradient changes when it is taken in chunks. An input of at
most one chunk stays float32: the conversions would cost time to save a few MiB (measured:
Model A's and B's training steps at T = 10, batch 16, 4 % slower with bool).

Used by :class:`scnn.models.SpecNet` in training for every synapse fed by spikes (not the
first, which sees the input, and not behind an active dropout, whose output is not 0/1).
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK_BYTES = 8 << 20  # float32 rows converted at once in the backward pass


def _row_chunks(rows: int, row_elements: int) -> range:
    step = max(1, CHUNK_BYTES // (4 * max(1, row_elements)))
    return range(0, rows, step)


def _kept(spikes: torch.Tensor) -> torch.Tensor:
    """What the backward pass keeps of the input: itself up to one chunk, else a bool copy."""
    return spikes if spikes.numel() * spikes.element_size() <= CHUNK_BYTES else spikes.to(torch.bool)


def _chunks_as(saved: torch.Tensor, dtype: torch.dtype):
    """(start, stop, rows as ``dtype``) over the saved input, one chunk of rows at a time."""
    chunks = _row_chunks(saved.shape[0], saved[0].numel())
    for start in chunks:
        stop = min(start + chunks.step, saved.shape[0])
        yield start, stop, saved[start:stop].to(dtype)


class SpikeLinearFunction(torch.autograd.Function):
    """``spikes @ weight.T + bias`` for spikes ``[R, N]`` (0/1, float), saved as bool."""

    @staticmethod
    def forward(ctx, spikes, weight, bias):
        ctx.save_for_backward(_kept(spikes), weight)
        ctx.has_bias = bias is not None
        return torch.addmm(bias, spikes, weight.t()) if bias is not None else spikes @ weight.t()

    @staticmethod
    def backward(ctx, grad_output):
        saved_spikes, weight = ctx.saved_tensors
        grad_spikes = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            for start, stop, spikes in _chunks_as(saved_spikes, weight.dtype):
                part = grad_output[start:stop].t()
                grad_weight = part @ spikes if grad_weight is None else grad_weight.addmm_(part, spikes)
                del spikes  # before the next chunk is converted: one float chunk at a time
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        if ctx.needs_input_grad[0]:
            grad_spikes = grad_output @ weight
        return grad_spikes, grad_weight, grad_bias


class SpikeConv2dFunction(torch.autograd.Function):
    """``conv2d(spikes, weight, bias)`` for spikes ``[R, C, H, W]`` (0/1, float), saved as bool."""

    @staticmethod
    def forward(ctx, spikes, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(_kept(spikes), weight)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.bias_shape = None if bias is None else list(bias.shape)
        return nn.functional.conv2d(spikes, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        saved_spikes, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_bias = need_bias and ctx.bias_shape is not None
        grad_spikes = grad_output.new_empty(saved_spikes.shape) if need_input else None
        grad_weight = None
        grad_bias = grad_output.sum((0, 2, 3)) if need_bias else None
        for start, stop, spikes in _chunks_as(saved_spikes, weight.dtype):
            grad_in, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_output[start:stop], spikes, weight, None,
                list(stride), list(padding), list(dilation), False, [0, 0], groups, [need_input, need_weight, False])
            if need_input:
                grad_spikes[start:stop] = grad_in
            if need_weight:
                grad_weight = grad_w if grad_weight is None else grad_weight.add_(grad_w)
            del spikes, grad_in, grad_w  # before the next chunk is converted
        return grad_spikes, grad_weight, grad_bias, None, None, None, None


def spike_synapse(synapse: nn.Module, spikes: torch.Tensor) -> torch.Tensor | None:
    """``synapse(spikes)`` keeping the spikes as bool for backward, or None if not a plain layer.

    synapse: ``nn.Conv2d`` (zero padding), ``nn.Linear`` or ``Sequential(Flatten, Linear)``
    (exact types: quantised subclasses such as Brevitas' keep their own forward).
    """
    if type(synapse) is nn.Sequential and len(synapse) == 2 and type(synapse[0]) is nn.Flatten:
        synapse, spikes = synapse[1], synapse[0](spikes)
    if type(synapse) is nn.Linear:
        return SpikeLinearFunction.apply(spikes, synapse.weight, synapse.bias)
    if type(synapse) is nn.Conv2d and synapse.padding_mode == "zeros" and isinstance(synapse.padding, tuple):
        return SpikeConv2dFunction.apply(spikes, synapse.weight, synapse.bias, synapse.stride, synapse.padding,
                                         synapse.dilation, synapse.groups)
    return None


class StaticLifLinearFunction(torch.autograd.Function):
    """The first LIF under static input and the dense layer after it, trained together.

    With direct encoding the LIF sees the same current c ``[B, N]`` at every step, so each
    neuron's spike train is a pattern of T bits (:func:`scnn.engine.kernels.spike_patterns`)
    and the dense layer's current is a sum over patterns::

        forward   I[t, b] = bias + sum_p bit_t(p) * G[b, p],  G[b, p] = sum_{j in p} W[:, j]
        backward  dL/dW[:, j] = sum_b H[b, p(b, j)],          H[b, p] = sum_t bit_t(p) * dL/dI[t, b]
                  dL/dS[t, b] = dL/dI[t, b] @ W               (dense, as for any synapse)
                  dL/dc[b] = sum_t BPTT(dL/dS)[t, b]          (the LIF's backward on its membranes)

    Two of the three dense products of a dense layer (forward and weight gradient) become a
    few dozen rows per sample. Fixed beta and threshold, fast-sigmoid surrogate; the same
    spikes as the LIF and the same gradients up to float32 summation order (tested).
    """

    @staticmethod
    def forward(ctx, current, weight, bias, beta, threshold, slope, reset_to_zero, steps):
        from scnn.engine import kernels as spike_kernels

        group_of, bits, membranes = spike_kernels.spike_patterns(current, steps, beta, threshold, reset_to_zero,
                                                                 keep_membranes=True)
        ctx.save_for_backward(membranes, bits, weight, beta, threshold)
        ctx.group_of, ctx.slope, ctx.reset_to_zero = group_of, slope, reset_to_zero
        ctx.has_bias = bias is not None
        return spike_kernels.grouped_product(group_of, bits, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        from scnn.engine import kernels as spike_kernels
        from scnn.engine.lif import reverse_recurrence, surrogate_gradient

        membranes, bits, weight, beta, threshold = ctx.saved_tensors
        grad_current = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = spike_kernels.grouped_weight_gradient(ctx.group_of, bits, grad_output)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum((0, 1))
        if ctx.needs_input_grad[0]:
            steps, batch = grad_output.shape[:2]
            grad_spikes = (grad_output.reshape(steps * batch, -1) @ weight).reshape(membranes.shape)
            # beta * (1 - S[t]) for the zero reset, read before the surrogate overwrites the membranes
            decay = (membranes[:-1] <= threshold).to(membranes.dtype).mul_(beta) if ctx.reset_to_zero else beta
            grad_total = surrogate_gradient(membranes, grad_spikes, threshold, ctx.slope, out=membranes)
            grad_current = reverse_recurrence(grad_total, decay).sum(0)
        return grad_current, grad_weight, grad_bias, None, None, None, None, None
