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

SURROGATES = ("fast_sigmoid", "atan", "sigmoid")
RESET_MECHANISMS = ("subtract", "zero")


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
    ):
        super().__init__()
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

    def forward(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a whole sequence from a zero state.

        current: input current ``[T, B, ...]``. Returns (spikes, membrane), both ``[T, B, ...]``.
        """
        membrane = torch.zeros_like(current[0])
        spikes, membranes = [], []
        for current_t in current:
            spike, membrane = self.leaky(current_t, membrane)
            spikes.append(spike)
            membranes.append(membrane)
        return torch.stack(spikes), torch.stack(membranes)

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
