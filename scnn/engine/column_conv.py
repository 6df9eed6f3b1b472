"""A convolution one column wide, on inputs one column wide, as one matrix product (inference).

The streaming presets convolve each frame's F coefficients with a ``(k, 1)`` kernel: a ``Conv2d`` on
``[T * B, C_in, F, 1]``. oneDNN runs that tiny, tall convolution far below the machine's speed (a
quarter of a streaming model's inference at T = 25, batch 128, measured by torch.profiler), while the
same map is linear in the frame: ``y = x @ M + b`` with ``M [C_in * F, C_out * F_out]`` banded, one
product of a few hundred columns. ``M`` is the convolution applied to the identity (each entry a weight
exactly, or 0), cached until the weight changes. Values: those of the convolution up to float32
summation order.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

_MATRICES: dict[int, tuple] = {}  # id(conv) -> (weakref, weight version, data pointer, rows, matrix, bias)


def column_conv_applies(conv: nn.Module, x: torch.Tensor) -> bool:
    """A plain ``Conv2d`` (kernel and input one column wide, stride and dilation 1, no groups, zero
    padding only over rows) on a CPU float32 input, no gradient wanted."""
    return (isinstance(conv, nn.Conv2d) and not torch.is_grad_enabled() and x.dim() == 4 and x.shape[-1] == 1
            and x.device.type == "cpu" and x.dtype == torch.float32 and conv.kernel_size[1] == 1
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple) and conv.padding[1] == 0)


def _matrix(conv: nn.Conv2d, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M [C_in * rows, C_out * rows_out], bias per output column [C_out * rows_out]) of ``conv``."""
    weight = conv.weight
    cached = _MATRICES.get(id(conv))
    key = (weight._version, weight.data_ptr(), rows)
    if cached is not None and cached[0]() is conv and cached[1:4] == key:
        return cached[4], cached[5]
    inputs = conv.in_channels * rows
    identity = torch.eye(inputs, dtype=weight.dtype).reshape(inputs, conv.in_channels, rows, 1)
    matrix = F.conv2d(identity, weight.detach(), None, 1, conv.padding).reshape(inputs, -1).contiguous()
    rows_out = matrix.shape[1] // conv.out_channels
    bias = (conv.bias.detach().repeat_interleave(rows_out) if conv.bias is not None
            else torch.zeros(matrix.shape[1], dtype=weight.dtype))
    _MATRICES[id(conv)] = (weakref.ref(conv, lambda _, key=id(conv): _MATRICES.pop(key, None)), *key, matrix, bias)
    return matrix, bias


def column_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for ``x [N, C_in, F, 1]`` (:func:`column_conv_applies`) as one product -> ``[N, C_out, F_out, 1]``."""
    matrix, bias = _matrix(conv, x.shape[2])
    out = torch.addmm(bias, x.reshape(x.shape[0], -1), matrix)
    return out.reshape(x.shape[0], conv.out_channels, -1, 1)
