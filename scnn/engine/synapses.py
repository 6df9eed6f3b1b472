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

Sparse training of a spike-fed dense layer (:class:`SpikeLinearFunction`): when at most
``SPARSE_TRAINING["max_density"]`` of its input spikes are 1 (CPU float32, numba, a layer of at
least ``min_weights`` weights, at least ``min_rows`` rows T * B), the forward product and the weight
gradient are computed from the active spikes only: the spikes are indexed once as CSR (row starts,
column indices: one pass of a compiled kernel over the 0/1 matrix) and kept as that index for the
backward pass instead of a bool copy, and::

    forward          y = S @ W.T + b        CSR S [R, N] times dense W.T: M values per spike
    weight gradient  dL/dW = (S.T @ G).T    CSR of S.T [N, R] (the same index, counting-sorted by
                                            column) times G = dL/dy [R, M]: M values per spike
    input gradient   dL/dS = G @ W          dense, as before (the LIF's backward needs all of it)

Both products are MKL's sparse-dense products; they cost about M operations per spike where the
dense ones cost M per input, so they pay below a measured density (``python
benchmarks/bench_engine.py --crossover-train``; docs/engine.md) and the dense path runs above it.
The values are those of the dense path up to float32 summation order (tests/test_sparse_training.py).

Spike-fed convolutions (:class:`SpikeConv2dFunction`) likewise take event-driven forward and
weight-gradient products below their own measured densities (:data:`SPARSE_CONV_TRAINING`,
:mod:`scnn.engine.sparse_conv`).

Used by :class:`scnn.models.SpecNet` in training for every synapse fed by spikes (not the
first, which sees the input, and not behind an active dropout, whose output is not 0/1).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from scnn.engine import kernels as spike_kernels
from scnn.engine import sparse_conv

CHUNK_BYTES = 8 << 20  # float32 rows converted at once in the backward pass

# Sparse training products of spike-fed dense layers (module docstring), from the measured crossover
# (`python benchmarks/bench_engine.py --crossover-train`, docs/engine.md): with 1280 rows (T 10,
# batch 128) the sparse products won up to 0.075-0.1 density on a shared machine, and on an idle one
# (2026-11-29 07:37) up to 0.05 for 12544 -> 128 (0.075 lost, 49 against 46 ms) and 0.075 for
# 5400 -> 128, hence 0.05, the sparse forward as well as the weight gradient (max_forward_density);
# with 160 rows (batch 16) they only tied below 0.02 and lost above: the weight gradient's N x M transposition and the index pass cost the same at any row
# count, hence min_rows. min_weights: smaller layers stay dense (the index costs more than their
# product). scnn.engine.policy.sparse_training() changes these for a block.
SPARSE_TRAINING = {"enabled": True, "max_density": 0.05, "max_forward_density": 0.05, "min_weights": 1 << 16,
                   "min_rows": 1024}

# Event-driven training products of spike-fed convolutions (SpikeConv2dFunction, scnn.engine.sparse_conv),
# from `python benchmarks/bench_engine.py --crossover-conv` (docs/engine.md, "Sparse convolution training";
# Model A's 16C3, 1 thread, interleaved, machine shared with two trainings): the event-driven weight
# gradient beside a dense forward won up to 0.05 at 160 rows (1.12x; 0.075 tied, 0.98x) and up to 0.075 at
# 1280 and 3200 rows (1.12-1.16x; 0.1 tied), hence max_density 0.06; the event-driven forward only beat
# oneDNN's direct convolution up to 0.01 and tied at 0.02, hence max_forward_density 0.015. min_rows:
# the fewest rows measured (T 10, batch 16). Model A's first LIF spikes at 15-18 % (random inputs and two
# trained checkpoints), so its 16C3 stays dense; sparser spike maps take the event-driven products.
# scnn.engine.policy.sparse_conv_training() changes these for a block.
SPARSE_CONV_TRAINING = {"enabled": True, "max_density": 0.06, "max_forward_density": 0.015, "min_rows": 160}


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


# --------------------------------------------------------------------------- spike index (CSR)

if spike_kernels.available():
    from numba import njit

    @njit(cache=True)
    def _index_rows(bits, columns, row_starts):  # pragma: no cover - compiled
        """CSR index of the nonzero entries of ``bits`` [R, N] (float32 read as uint32): column indices
        into ``columns``, ``row_starts`` [R + 1]; returns their count, or -1 when ``columns`` could
        overflow (more than ``len(columns) - N`` nonzeros). Branch-free inner loop: every index is
        written and the position advances only past nonzero entries (a data-dependent branch
        mispredicts at a few percent density and cost five times as much, measured)."""
        position = 0
        capacity = columns.shape[0] - bits.shape[1]
        for r in range(bits.shape[0]):
            row_starts[r] = position
            if position > capacity:
                return -1
            row = bits[r]
            for j in range(row.shape[0]):
                columns[position] = j
                position += row[j] != 0
        row_starts[bits.shape[0]] = position
        return position

    @njit(cache=True)
    def _transpose_index(row_starts, columns, num_columns, column_starts, rows):  # pragma: no cover - compiled
        """The CSR index of S.T from that of S (counting sort by column; rows ascending within a column)."""
        column_starts[:] = 0
        for k in range(columns.shape[0]):
            column_starts[columns[k] + 1] += 1
        for j in range(num_columns):
            column_starts[j + 1] += column_starts[j]
        fill = column_starts[:-1].copy()
        for r in range(row_starts.shape[0] - 1):
            for k in range(row_starts[r], row_starts[r + 1]):
                j = columns[k]
                rows[fill[j]] = r
                fill[j] += 1


def spike_index(spikes: torch.Tensor, max_density: float = 1.0) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CSR index ``(row_starts int32 [R + 1], columns int32 [nnz])`` of the nonzero entries of the
    float32 CPU matrix ``spikes`` ``[R, N]`` (one compiled pass), or None when more than about
    ``max_density`` of them are nonzero (the pass stops once its buffer of ``max_density * R * N + N``
    indices could overflow)."""
    matrix = spikes.detach().contiguous().numpy()
    rows, neurons = matrix.shape
    capacity = min(int(max_density * rows * neurons) + neurons, rows * neurons + neurons)
    if capacity >= 2**31:
        return None
    columns = np.empty(capacity, np.int32)
    row_starts = np.empty(rows + 1, np.int32)
    count = _index_rows(matrix.view(np.uint32), columns, row_starts)
    if count < 0 or count > max_density * rows * neurons:
        return None
    kept = columns[:count] if 2 * count >= capacity else columns[:count].copy()  # no large idle buffer kept
    return torch.from_numpy(row_starts), torch.from_numpy(kept)


def _csr(row_starts: torch.Tensor, columns: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The 0/1 matrix of a CSR index as a torch sparse CSR tensor (values all one)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": its products are tested here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(row_starts, columns, torch.ones(len(columns)), size=shape,
                                       check_invariants=False)


def sparse_weight_gradient(row_starts: torch.Tensor, columns: torch.Tensor, num_columns: int,
                           grad_output: torch.Tensor) -> torch.Tensor:
    """``grad_output.T @ S`` ``[M, N]`` for the 0/1 matrix S ``[R, N]`` given by its CSR index, computed as
    ``(S.T @ grad_output).T`` with S.T as CSR (a transposed view of an ``[N, M]`` result). The index of
    S.T is int64: MKL's product with int32 indices took 2-4 times as long here (measured)."""
    column_starts = np.empty(num_columns + 1, np.int64)
    rows = np.empty(len(columns), np.int64)
    _transpose_index(row_starts.numpy(), columns.numpy(), num_columns, column_starts, rows)
    transposed = _csr(torch.from_numpy(column_starts), torch.from_numpy(rows), (num_columns, len(row_starts) - 1))
    gradient = grad_output.new_empty(num_columns, grad_output.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.addmm(gradient, transposed, grad_output.contiguous(), beta=0).t()


def sparse_training_applies(spikes: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a spike-fed dense layer may take the sparse training products (before the density test):
    enabled, CPU float32 with numba, a 2-D input of at least ``min_rows`` rows and a layer of at least
    ``min_weights`` weights."""
    return (SPARSE_TRAINING["enabled"] and spikes.device.type == "cpu" and spikes.dtype == torch.float32
            and weight.dtype == torch.float32 and spikes.dim() == 2 and spikes.shape[0] >= SPARSE_TRAINING["min_rows"]
            and weight.numel() >= SPARSE_TRAINING["min_weights"] and spike_kernels.available()
            and not torch.jit.is_tracing())


class SpikeLinearFunction(torch.autograd.Function):
    """``spikes @ weight.T + bias`` for spikes ``[R, N]`` (0/1, float), saved as bool or, when sparse
    enough, computed from and saved as the CSR index of the active spikes (module docstring)."""

    @staticmethod
    def forward(ctx, spikes, weight, bias):
        ctx.has_bias = bias is not None
        index = spike_index(spikes, SPARSE_TRAINING["max_density"]) if sparse_training_applies(spikes, weight) else None
        ctx.sparse = index is not None
        if index is not None:
            row_starts, columns = index
            ctx.num_columns = spikes.shape[1]
            ctx.save_for_backward(row_starts, columns, weight)
            if len(columns) > SPARSE_TRAINING["max_forward_density"] * spikes.numel():
                # the sparse forward product pays at lower densities than the weight gradient's (measured)
                return torch.addmm(bias, spikes, weight.t()) if bias is not None else spikes @ weight.t()
            transposed = spike_kernels._transposed(weight)
            matrix = _csr(row_starts, columns, tuple(spikes.shape))
            return torch.addmm(bias, matrix, transposed) if bias is not None else torch.sparse.mm(matrix, transposed)
        ctx.save_for_backward(_kept(spikes), weight)
        return torch.addmm(bias, spikes, weight.t()) if bias is not None else spikes @ weight.t()

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.sparse:
            row_starts, columns, weight = ctx.saved_tensors
        else:
            saved_spikes, weight = ctx.saved_tensors
        grad_spikes = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1] and ctx.sparse:
            grad_weight = sparse_weight_gradient(row_starts, columns, ctx.num_columns, grad_output)
        elif ctx.needs_input_grad[1]:
            for start, stop, spikes in _chunks_as(saved_spikes, weight.dtype):
                part = grad_output[start:stop].t()
                grad_weight = part @ spikes if grad_weight is None else grad_weight.addmm_(part, spikes)
                del spikes  # before the next chunk is converted: one float chunk at a time
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        if ctx.needs_input_grad[0]:
            grad_spikes = grad_output @ weight
        return grad_spikes, grad_weight, grad_bias


def sparse_conv_training_applies(spikes: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    """Whether a spike-fed convolution may take the event-driven training products (before the density
    test): enabled, CPU float32 with numba, a 4-D input of at least ``min_rows`` rows, groups 1."""
    return (SPARSE_CONV_TRAINING["enabled"] and spikes.device.type == "cpu" and spikes.dtype == torch.float32
            and weight.dtype == torch.float32 and spikes.dim() == 4 and groups == 1
            and spikes.shape[0] >= SPARSE_CONV_TRAINING["min_rows"] and spike_kernels.available()
            and not torch.jit.is_tracing())


class SpikeConv2dFunction(torch.autograd.Function):
    """``conv2d(spikes, weight, bias)`` for spikes ``[R, C, H, W]`` (0/1, float), saved as bool or, when
    sparse enough (:data:`SPARSE_CONV_TRAINING`), computed from and saved as the CSR index of the
    active spikes (:mod:`scnn.engine.sparse_conv`: forward and weight gradient event-driven, input
    gradient dense)."""

    @staticmethod
    def forward(ctx, spikes, weight, bias, stride, padding, dilation, groups):
        ctx.conv = (stride, padding, dilation, groups)
        ctx.bias_shape = None if bias is None else list(bias.shape)
        index = None
        if sparse_conv_training_applies(spikes, weight, groups):
            index = spike_index(spikes.reshape(spikes.shape[0], -1), SPARSE_CONV_TRAINING["max_density"])
        ctx.sparse = index is not None
        if index is not None:
            row_starts, columns = index
            ctx.input_shape = tuple(spikes.shape)
            ctx.save_for_backward(row_starts, columns, weight)
            if len(columns) <= SPARSE_CONV_TRAINING["max_forward_density"] * spikes.numel():
                return sparse_conv.sparse_conv_forward(row_starts, columns, spikes.shape, weight, bias, stride,
                                                       padding, dilation)
            return nn.functional.conv2d(spikes, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(_kept(spikes), weight)
        return nn.functional.conv2d(spikes, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        stride, padding, dilation, groups = ctx.conv
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_bias = need_bias and ctx.bias_shape is not None
        grad_bias = grad_output.sum((0, 2, 3)) if need_bias else None
        if ctx.sparse:
            row_starts, columns, weight = ctx.saved_tensors
            grad_weight = grad_spikes = None
            if need_weight:
                grad_weight = sparse_conv.sparse_conv_weight_gradient(row_starts, columns, ctx.input_shape, grad_output,
                                                                      weight.shape[2:], stride, padding, dilation)
            if need_input:
                grad_spikes = sparse_conv.conv_input_gradient(ctx.input_shape, weight, grad_output, stride, padding,
                                                              dilation, groups)
            return grad_spikes, grad_weight, grad_bias, None, None, None, None
        saved_spikes, weight = ctx.saved_tensors
        grad_spikes = grad_output.new_empty(saved_spikes.shape) if need_input else None
        grad_weight = None
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
