"""Adaptive leaky integrate-and-fire neurons: the ALIF of Bellec et al. 2018.

G. Bellec, D. Salaj, A. Subramoney, R. Legenstein, W. Maass, "Long short-term memory and
learning-to-learn in networks of spiking neurons", NeurIPS 2018 (LSNN): every spike raises the
neuron's threshold, which relaxes back with its own time constant, so a neuron that has just
been active needs more input to fire again (spike-frequency adaptation, a memory longer than
the membrane's). Written in snntorch's discrete form (reset delayed by one step, the input
not scaled by 1 - beta)::

    A[t] = clamp(rho, 0, 1) * A[t-1] + (1 - clamp(rho, 0, 1)) * S[t-1]     adaptation (Bellec's b)
    B[t] = U_thr + max(b, 0) * A[t]                                       adaptive threshold
    U[t] = clamp(beta, 0, 1) * U[t-1] + I[t] - sg(S[t-1]) * B[t]          reset "subtract"
    U[t] = clamp(beta, 0, 1) * (1 - sg(S[t-1])) * U[t-1] + I[t]           reset "zero"
    S[t] = H(U[t] - B[t])                      forward: Heaviside; backward: surrogate

with U[-1] = A[-1] = S[-1] = 0 and sg() stopping the gradient (snntorch detaches its reset
signal the same way). As in Bellec et al., the reset subtracts the threshold the neuron now
has. With b = 0 this is exactly ``snntorch.Leaky`` (tested). beta, U_thr, rho and b may be
learnable and one per channel; the clamps keep learnt values in their ranges.
"""

from __future__ import annotations

import torch
from torch import nn

from scnn.engine import kernels as spike_kernels
from scnn.engine import policy as engine
from scnn.engine.recurrent import FusedALIFSequence, check_engine, fused_sequence_applies
from scnn.neurons.base import (SpikingNeuron, check_lif_arguments, check_range, make_surrogate, per_channel,
                               register_neuron)


@register_neuron("alif")
class ALIF(SpikingNeuron):
    """Adaptive-threshold LIF layer (Bellec et al. 2018; equations in the module docstring).

    Args:
        beta, threshold, surrogate, slope, reset_mechanism, learn_beta, learn_threshold: as
            :class:`scnn.neurons.Leaky` (beta in [0, 1], threshold U_thr > 0).
        rho: adaptation decay per step, in [0, 1] (Bellec's exp(-dt / tau_a)).
        adaptation: threshold increase b >= 0 per unit of adaptation (Bellec's beta).
        learn_adaptation: train rho and b.
        num_channels, channel_dims: if num_channels is given, one beta, threshold, rho and b per
            channel (dimension 1 of ``[B, C, ...]``; channel_dims trailing dimensions after it).
        engine: "fused" runs a whole sequence in :class:`scnn.engine.recurrent.FusedALIFSequence`
            (fast-sigmoid surrogate, CPU/CUDA floats; otherwise the loop); "loop" steps :meth:`step`'s equations.
    """

    def __init__(self, beta: float = 0.5, threshold: float = 1.0, surrogate: str = "fast_sigmoid",
                 slope: float = 25.0, reset_mechanism: str = "subtract", learn_beta: bool = False,
                 learn_threshold: bool = False, num_channels: int | None = None, channel_dims: int = 0,
                 rho: float = 0.9, adaptation: float = 1.0, learn_adaptation: bool = False, engine: str = "fused"):
        super().__init__()
        self.engine = check_engine(engine, surrogate)
        check_lif_arguments(reset_mechanism, beta, threshold)
        check_range("rho", rho, 0.0, 1.0)
        check_range("adaptation", adaptation, 0.0)
        self.reset_to_zero = reset_mechanism == "zero"
        self.slope = float(slope)
        self.spike_function = make_surrogate(surrogate, slope)
        for name, value, learn in (("beta", beta, learn_beta), ("threshold", threshold, learn_threshold),
                                   ("rho", rho, learn_adaptation), ("adaptation", adaptation, learn_adaptation)):
            tensor = per_channel(value, num_channels, channel_dims)
            if learn:
                setattr(self, name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
        self.register_state("membrane")  # single-step state [B, ...]
        self.register_state("adaptation_state")
        self.register_state("spike")

    @property
    def reset_mechanism(self) -> str:
        return "zero" if self.reset_to_zero else "subtract"

    def neuron_parameters(self) -> dict[str, torch.Tensor]:
        """beta, threshold (U_thr), rho (adaptation decay) and adaptation (b): its parameters or buffers."""
        return {"beta": self.beta, "threshold": self.threshold, "rho": self.rho, "adaptation": self.adaptation}

    def _advance(self, current, membrane, adaptation, spike):
        """One step of the equations: (I[t], U[t-1], A[t-1], S[t-1]) -> (S[t], U[t], A[t])."""
        rho = self.rho.clamp(0, 1)
        adaptation = rho * adaptation + (1 - rho) * spike
        threshold = self.threshold + self.adaptation.clamp(min=0) * adaptation
        reset = spike.detach()
        beta = self.beta.clamp(0, 1)
        if self.reset_to_zero:
            membrane = beta * (1 - reset) * membrane + current
        else:
            membrane = beta * membrane + current - reset * threshold
        return self.spike_function(membrane - threshold), membrane, adaptation

    def forward(self, current: torch.Tensor, return_membrane: bool = True,
                overwrite_current: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """current ``[T, B, ...]`` from a zero state -> (spikes, membranes) ``[T, B, ...]`` (membranes None
        unless ``return_membrane``); the fused engine when it applies, else the step loop;
        ``overwrite_current`` is not used. Inference on the CPU (more than one step) runs the compiled
        :func:`scnn.engine.kernels.alif_spikes`: the same values."""
        if current.shape[0] > 1 and engine.fast_inference_applies(current):  # any surrogate: same forward
            return spike_kernels.alif_spikes(current, self.beta, self.threshold, self.rho, self.adaptation,
                                             self.reset_to_zero, return_membrane)
        if fused_sequence_applies(self.engine, current):
            spikes, membranes = FusedALIFSequence.apply(current, self.beta, self.threshold, self.rho, self.adaptation,
                                                        self.slope, self.reset_to_zero)
            return spikes, membranes if return_membrane else None
        membrane = adaptation = spike = torch.zeros_like(current[0])
        spikes, membranes = [], []
        for current_t in current:
            spike, membrane, adaptation = self._advance(current_t, membrane, adaptation, spike)
            spikes.append(spike)
            membranes.append(membrane)
        return torch.stack(spikes), torch.stack(membranes) if return_membrane else None

    def step(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: current ``[B, ...]`` -> (spike, membrane) ``[B, ...]``, state kept until reset()."""
        if self.membrane is None or self.membrane.shape != current.shape:
            self.membrane = self.adaptation_state = self.spike = torch.zeros_like(current)
        self.spike, self.membrane, self.adaptation_state = self._advance(current, self.membrane,
                                                                         self.adaptation_state, self.spike)
        return self.spike, self.membrane
