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

from scnn.engine import kernels as spike_kernels
from scnn.engine import policy as engine
from scnn.engine.lif import FusedLeakySequence
from scnn.neurons.base import (RESET_MECHANISMS, LifParameters, SpikingNeuron, make_surrogate, register_neuron)

ENGINES = ("fused", "snntorch")


@register_neuron("leaky")
class LIF(SpikingNeuron):
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
        self.register_state("membrane")  # single-step state [B, ...]

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
        :func:`scnn.engine.kernels.lif_spikes`: the same values.
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

    def lif_parameters(self) -> LifParameters:
        return LifParameters(beta=self.leaky.beta, threshold=self.leaky.threshold,
                             reset_to_zero=self.leaky.reset_mechanism == "zero", slope=self.slope,
                             fused=self.engine == "fused")

    @property
    def spike_function(self):
        """The surrogate spike function: snntorch's, or the fused engine's fast sigmoid."""
        return make_surrogate("fast_sigmoid", self.slope) if self.engine == "fused" else self.leaky.spike_grad

    def snntorch_equivalent(self, init_hidden: bool = False, output: bool = False) -> nn.Module:
        """A ``snntorch.Leaky`` with copies of this neuron's beta and threshold (NeuroBench, references)."""
        leaky = self.leaky
        return snntorch.Leaky(beta=leaky.beta.detach().clone(), threshold=leaky.threshold.detach().clone(),
                              spike_grad=leaky.spike_grad, reset_mechanism=leaky.reset_mechanism,
                              init_hidden=init_hidden, output=output)


Leaky = LIF  # snntorch's name for the same neuron
