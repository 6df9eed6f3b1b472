"""Event-driven products of a convolution fed by spikes: forward and weight gradient from the active inputs.

A 2-D convolution ``y = conv2d(S, W) + b`` with 0/1 input spikes S ``[R, C, H, W]`` (R = T * B rows)
and weight W ``[M, C, KH, KW]`` is a sum over the spikes: each spike at ``(r, c, y, x)`` adds the
filter column ``W[:, c, ky, kx]`` (M values) into the output position ``(oy, ox)`` it reaches through
tap ``(ky, kx)``, where ``oy * stride + ky * dilation - padding = y`` (likewise for x). Its weight
gradient is the same sum read the other way::

    forward          y[r, :, oy, ox]   = b + sum over spikes (r, c, y, x) and taps reaching (oy, ox) of W[:, c, ky, kx]
    weight gradient  dL/dW[:, c, ky, kx] = sum over spikes (r, c, y, x) and their taps of G[r, :, oy, ox]
    input gradient   dL/dS = conv_transpose(G, W)    dense, as on the dense path (the LIF needs all of it)

with G = dL/dy. Each spike costs at most KH * KW * M additions where the dense convolution costs
``M * C * KH * KW`` multiply-adds per output position, so the event-driven products pay below a
measured density (``python benchmarks/bench_engine.py --crossover-conv``, docs/engine.md).

The kernels (numba, one block of rows per thread) take the spikes as the CSR index of
:func:`scnn.engine.synapses.spike_index` over the ``[R, C * H * W]`` view (column ``c * H * W + y * W + x``,
ascending within a row, so each input channel's spikes are one run) and a table of the output
position each input position reaches through each tap (:func:`_targets`). The forward goes output
channel by output channel, adding ``W[m, c, ky, kx]`` into one output plane that stays in L1; the
weight gradient transposes each row of G to ``[Ho * Wo, M]`` and sums, per input channel and tap,
the M-vectors at the positions its spikes reach (float32 within a row, float64 across rows, so it
differs from the dense path's float32 blocked sums only by float32 rounding). Values equal the
dense path's within float32 summation order (tests/test_sparse_conv.py). Zero padding, any stride
and dilation, groups 1.
"""

from __future__ import annotations

import numpy as np
import torch

from scnn.engine import kernels as spike_kernels

if spike_kernels.available():
    from numba import njit, prange

    @njit(cache=True, error_model="numpy")
    def _row_taps(row_starts, columns, targets, r, positions, filter_columns):  # pragma: no cover - compiled
        """The (output position, filter column c * KH * KW + tap) pairs of row r's spikes, into the two
        buffers; returns their count (taps that reach no output left out)."""
        plane, taps = targets.shape
        count = 0
        for k in range(row_starts[r], row_starts[r + 1]):
            c = columns[k] // plane
            q = columns[k] - c * plane
            for t in range(taps):
                p = targets[q, t]
                positions[count] = p  # written always, kept only when p >= 0 (branch-free)
                filter_columns[count] = c * taps + t
                count += p >= 0
        return count

    @njit(cache=True)
    def _most_per_row(row_starts):  # pragma: no cover - compiled
        most = 0
        for r in range(row_starts.shape[0] - 1):
            most = max(most, row_starts[r + 1] - row_starts[r])
        return most

    @njit(parallel=True, cache=True, error_model="numpy")
    def _scatter_forward(row_starts, columns, targets, weight, bias, blocks, out):  # pragma: no cover - compiled
        """out [R, M, P] = bias + the filter columns of every spike (module docstring).

        targets [H * W, KH * KW] int32: the output position (oy * Wo + ox) an input position reaches
        through each tap, -1 where none; weight [M, C * KH * KW] float32; bias [M]; blocks: row blocks
        (one per thread). Output channel by channel: one output plane (P floats) and one weight row
        stay in L1 while every pair of the row adds into it."""
        rows, channels_out, _ = out.shape
        capacity = _most_per_row(row_starts) * targets.shape[1]
        per_block = (rows + blocks - 1) // blocks
        for block in prange(blocks):
            positions = np.empty(capacity, np.int32)
            filter_columns = np.empty(capacity, np.int32)
            for r in range(block * per_block, min(rows, (block + 1) * per_block)):
                count = _row_taps(row_starts, columns, targets, r, positions, filter_columns)
                m = 0
                while m + 4 <= channels_out:  # four channels per pass: each pair's indices read once
                    plane0, plane1, plane2, plane3 = out[r, m], out[r, m + 1], out[r, m + 2], out[r, m + 3]
                    plane0[:], plane1[:], plane2[:], plane3[:] = bias[m], bias[m + 1], bias[m + 2], bias[m + 3]
                    weights0, weights1, weights2, weights3 = weight[m], weight[m + 1], weight[m + 2], weight[m + 3]
                    for i in range(count):
                        p, f = positions[i], filter_columns[i]
                        plane0[p] += weights0[f]
                        plane1[p] += weights1[f]
                        plane2[p] += weights2[f]
                        plane3[p] += weights3[f]
                    m += 4
                for m in range(m, channels_out):
                    plane = out[r, m]
                    plane[:] = bias[m]
                    weights = weight[m]
                    for i in range(count):
                        plane[positions[i]] += weights[filter_columns[i]]

    @njit(parallel=True, cache=True, error_model="numpy")
    def _gather_weight_gradient(row_starts, columns, targets, grad_output, blocks, totals):  # pragma: no cover
        """totals [blocks, M, C * KH * KW] float64 (zeroed here): for every spike and tap, the output
        gradient ``grad_output[r, :, p]`` ([R, M, P] float32) at the position p the tap reaches, added
        into the tap's filter column.

        Per row, the gradient is transposed to ``[P, M]`` (a tap's M values contiguous), and for each
        input channel (its spikes are one run of the row's ascending columns) and tap the M sums are
        taken over the channel's spikes in float32 before they go into the float64 totals: one short
        vector addition per spike and tap, and one update of the totals per channel and tap (measured
        1.3-1.5x faster than adding into the totals per spike and output channel)."""
        rows, channels_out, positions = grad_output.shape
        plane, taps = targets.shape
        per_block = (rows + blocks - 1) // blocks
        for block in prange(blocks):
            total = totals[block]
            total[:] = 0.0
            transposed = np.empty(positions * channels_out, np.float32)  # grad_output[r] as [P, M]
            sums = np.empty(channels_out, np.float32)
            for r in range(block * per_block, min(rows, (block + 1) * per_block)):
                start, stop = row_starts[r], row_starts[r + 1]
                if start == stop:
                    continue  # a silent row contributes nothing: skip its transposition
                for p in range(positions):
                    for m in range(channels_out):
                        transposed[p * channels_out + m] = grad_output[r, m, p]
                first = start
                while first < stop:  # one input channel's spikes: columns [first, last)
                    c = columns[first] // plane
                    last = first
                    while last < stop and columns[last] < (c + 1) * plane:
                        last += 1
                    for t in range(taps):
                        sums[:] = 0.0
                        for k in range(first, last):
                            p = targets[columns[k] - c * plane, t]
                            if p >= 0:
                                source = p * channels_out
                                for m in range(channels_out):
                                    sums[m] += transposed[source + m]
                        for m in range(channels_out):
                            total[m, c * taps + t] += sums[m]
                    first = last


def _targets(input_shape, output_shape, kernel_size, stride, padding, dilation) -> np.ndarray:
    """``[H * W, KH * KW]`` int32: for input position (y, x) and tap (ky, kx) the output position
    ``oy * Wo + ox`` with ``oy * stride + ky * dilation - padding = y`` (likewise x), or -1 where the tap
    reaches no output (not on the stride's grid, or outside the output)."""
    reach = []
    for axis in range(2):
        size, out_size = input_shape[2 + axis], output_shape[2 + axis]
        offset = (np.arange(size)[:, None] + padding[axis]
                  - np.arange(kernel_size[axis])[None, :] * dilation[axis])  # [size, K]: oy * stride
        position = offset // stride[axis]
        valid = (offset >= 0) & (offset % stride[axis] == 0) & (position < out_size)
        reach.append(np.where(valid, position, -1))
    rows, cols = reach  # [H, KH], [W, KW]
    out_width = output_shape[3]
    table = rows[:, None, :, None] * out_width + cols[None, :, None, :]  # [H, W, KH, KW]
    table = np.where((rows[:, None, :, None] >= 0) & (cols[None, :, None, :] >= 0), table, -1)
    return table.reshape(input_shape[2] * input_shape[3], -1).astype(np.int32)


def _blocks(rows: int) -> int:
    """Row blocks: one per thread torch may use (numba's pool set to the same count)."""
    spike_kernels._use_torch_threads()
    return max(1, min(rows, torch.get_num_threads()))


def output_shape(input_shape, weight_shape, stride, padding, dilation) -> tuple[int, int, int, int]:
    """``(R, M, Ho, Wo)`` of ``conv2d`` on ``input_shape`` ``(R, C, H, W)`` (as torch computes it)."""
    sizes = [(input_shape[2 + i] + 2 * padding[i] - dilation[i] * (weight_shape[2 + i] - 1) - 1) // stride[i] + 1
             for i in range(2)]
    return input_shape[0], weight_shape[0], sizes[0], sizes[1]


def sparse_conv_forward(row_starts: torch.Tensor, columns: torch.Tensor, input_shape, weight: torch.Tensor,
                        bias: torch.Tensor | None, stride, padding, dilation) -> torch.Tensor:
    """``conv2d(S, weight, bias, stride, padding, dilation)`` ``[R, M, Ho, Wo]`` for the 0/1 input S of
    shape ``input_shape`` ``(R, C, H, W)`` given by the CSR index of its ``[R, C*H*W]`` view."""
    shape = output_shape(input_shape, weight.shape, stride, padding, dilation)
    out = weight.new_empty(shape)
    bias_values = bias.detach() if bias is not None else weight.new_zeros(shape[1])
    targets = _targets(input_shape, shape, weight.shape[2:], stride, padding, dilation)
    weight_rows = weight.detach().reshape(shape[1], -1).contiguous()  # [M, C * KH * KW]
    _scatter_forward(row_starts.numpy(), columns.numpy(), targets, weight_rows.numpy(),
                     bias_values.contiguous().numpy(), _blocks(shape[0]), out.view(shape[0], shape[1], -1).numpy())
    return out


def sparse_conv_weight_gradient(row_starts: torch.Tensor, columns: torch.Tensor, input_shape,
                                grad_output: torch.Tensor, kernel_size, stride, padding, dilation) -> torch.Tensor:
    """``dL/dW`` ``[M, C, KH, KW]`` (float32) of the convolution above for ``grad_output`` ``[R, M, Ho, Wo]``."""
    rows, channels_out = grad_output.shape[:2]
    blocks = _blocks(rows)
    totals = np.empty((blocks, channels_out, input_shape[1] * kernel_size[0] * kernel_size[1]), np.float64)
    gradient = grad_output.detach().contiguous()
    targets = _targets(input_shape, gradient.shape, kernel_size, stride, padding, dilation)
    _gather_weight_gradient(row_starts.numpy(), columns.numpy(), targets,
                            gradient.view(rows, channels_out, -1).numpy(), blocks, totals)
    total = torch.from_numpy(totals.sum(0)).reshape(channels_out, input_shape[1], *kernel_size)
    return total.to(grad_output.dtype)


def conv_input_gradient(input_shape, weight: torch.Tensor, grad_output: torch.Tensor, stride, padding, dilation,
                        groups: int) -> torch.Tensor:
    """``dL/dS`` ``input_shape`` of ``conv2d`` (the dense transposed convolution; needs no input values)."""
    shape_only = grad_output.new_empty(1).expand(input_shape)
    return torch.ops.aten.convolution_backward(grad_output, shape_only, weight, None, list(stride), list(padding),
                                               list(dilation), False, [0, 0], groups, [True, False, False])[0]
