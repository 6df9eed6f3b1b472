"""Second-order (synaptic current) leaky integrate-and-fire neurons, ``snntorch.Synaptic`` as their definition.

The neuron (snntorch's ``Synaptic``, reset delayed by one step)::

    R[t]   = H(U[t-1] - U_thr)                                 reset signal, detached
    Syn[t] = clamp(alpha, 0, 1) * Syn[t-1] + I[t]              synaptic current
    U[t]   = clamp(beta, 0, 1) * U[t-1] + Syn[t] - R[t] * U_thr            reset "subtract"
    U[t]   = (1 - R[t]) * (clamp(beta, 0, 1) * U[t-1] + Syn[t])             reset "zero" (Syn kept)
    S[t]   = H(U[t] - U_thr)                                   forward: Heaviside; backward: surrogate

with Syn[-1] = U[-1] = 0: the input is low-pass filtered twice (time constants alpha, beta).
"""

from __future__ import annotations

import torch
from torch import nn

import snntorch

from scnn.engine.recurrent import FusedSynapticSequence, check_engine, fused_sequence_applies
from scnn.neurons.base import (SpikingNeuron, check_lif_arguments, check_range, make_surrogate, per_channel,
                               register_neuron)


@register_neuron("synaptic")
class Synaptic(SpikingNeuron):
    """Second-order LIF layer (see the module docstring for the equations).

    Args:
        alpha: synaptic current decay per step, in [0, 1]; learn_alpha: train it.
        beta, threshold, surrogate, slope, reset_mechanism, learn_beta, learn_threshold: as
            :class:`scnn.neurons.Leaky` (beta in [0, 1], threshold > 0).
        num_channels, channel_dims: if num_channels is given, one alpha, beta and threshold per
            channel (dimension 1 of ``[B, C, ...]``; channel_dims trailing dimensions after it).
        engine: "fused" runs a whole sequence in :class:`scnn.engine.recurrent.FusedSynapticSequence`
            (fast-sigmoid surrogate, CPU/CUDA floats; otherwise the loop); "loop" steps snntorch's module.
    """

    def __init__(self, beta: float = 0.5, threshold: float = 1.0, surrogate: str = "fast_sigmoid",
                 slope: float = 25.0, reset_mechanism: str = "subtract", learn_beta: bool = False,
                 learn_threshold: bool = False, num_channels: int | None = None, channel_dims: int = 0,
                 alpha: float = 0.5, learn_alpha: bool = False, engine: str = "fused"):
        super().__init__()
        self.engine = check_engine(engine, surrogate)
        check_lif_arguments(reset_mechanism, beta, threshold)
        check_range("alpha", alpha, 0.0, 1.0)
        self.slope = float(slope)
        self.synaptic = snntorch.Synaptic(
            alpha=per_channel(alpha, num_channels, channel_dims), beta=per_channel(beta, num_channels, channel_dims),
            threshold=per_channel(threshold, num_channels, channel_dims), spike_grad=make_surrogate(surrogate, slope),
            reset_mechanism=reset_mechanism, learn_alpha=learn_alpha, learn_beta=learn_beta,
            learn_threshold=learn_threshold)
        self.register_state("synaptic_current")  # single-step state [B, ...]
        self.register_state("membrane")

    @property
    def alpha(self) -> torch.Tensor:
        return self.synaptic.alpha

    @property
    def beta(self) -> torch.Tensor:
        return self.synaptic.beta

    @property
    def threshold(self) -> torch.Tensor:
        return self.synaptic.threshold

    @property
    def reset_mechanism(self) -> str:
        return self.synaptic.reset_mechanism

    def neuron_parameters(self) -> dict[str, torch.Tensor]:
        """alpha (synaptic current decay), beta and threshold (snntorch's tensors)."""
        return {"alpha": self.synaptic.alpha, "beta": self.synaptic.beta, "threshold": self.synaptic.threshold}

    def forward(self, current: torch.Tensor, return_membrane: bool = True,
                overwrite_current: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """current ``[T, B, ...]`` from a zero state -> (spikes, membranes) ``[T, B, ...]`` (membranes None
        unless ``return_membrane``). The fused engine when it applies, else steps snntorch's module;
        ``overwrite_current`` is not used."""
        if fused_sequence_applies(self.engine, current):
            source = self.synaptic
            spikes, membranes = FusedSynapticSequence.apply(current, source.alpha, source.beta, source.threshold,
                                                            self.slope, source.reset_mechanism == "zero")
            return spikes, membranes if return_membrane else None
        synaptic, membrane = torch.zeros_like(current[0]), torch.zeros_like(current[0])
        spikes, membranes = [], []
        for current_t in current:
            spike, synaptic, membrane = self.synaptic(current_t, synaptic, membrane)
            spikes.append(spike)
            membranes.append(membrane)
        return torch.stack(spikes), torch.stack(membranes) if return_membrane else None

    def step(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: current ``[B, ...]`` -> (spike, membrane) ``[B, ...]``, state kept until reset()."""
        if self.membrane is None or self.membrane.shape != current.shape:
            self.synaptic_current, self.membrane = torch.zeros_like(current), torch.zeros_like(current)
        spike, self.synaptic_current, self.membrane = self.synaptic(current, self.synaptic_current, self.membrane)
        return spike, self.membrane

    @property
    def spike_function(self):
        return self.synaptic.spike_grad

    def snntorch_equivalent(self, init_hidden: bool = False, output: bool = False) -> nn.Module:
        """A ``snntorch.Synaptic`` with copies of this neuron's alpha, beta and threshold."""
        source = self.synaptic
        return snntorch.Synaptic(alpha=source.alpha.detach().clone(), beta=source.beta.detach().clone(),
                                 threshold=source.threshold.detach().clone(), spike_grad=source.spike_grad,
                                 reset_mechanism=source.reset_mechanism, init_hidden=init_hidden, output=output)
