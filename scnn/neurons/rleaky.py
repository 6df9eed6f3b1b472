"""Recurrent leaky integrate-and-fire neurons with ``snntorch.RLeaky`` as their definition.

The neuron (snntorch's ``RLeaky``, reset delayed by one step)::

    R[t] = H(U[t-1] - U_thr)                                  reset signal, detached
    U[t] = clamp(beta, 0, 1) * U[t-1] + I[t] + W_rec(S[t-1]) - R[t] * U_thr      reset "subtract"
    U[t] = (1 - R[t]) * (clamp(beta, 0, 1) * U[t-1] + I[t] + W_rec(S[t-1]))      reset "zero"
    S[t] = H(U[t] - U_thr)                                    forward: Heaviside; backward: surrogate

with U[-1] = S[-1] = 0. ``W_rec`` is all-to-all (a ``Linear(size, size)`` with bias for a dense
layer, a ``Conv2d(size, size, kernel, padding=kernel // 2)`` for a convolution's maps) or
one-to-one (``S[t-1] * V``, each neuron feeding back only to itself). The recurrent weights are
the neuron's own synapses: :meth:`RLeaky.recurrent_synapses` reports them to the metrics.
"""

from __future__ import annotations

import torch
from torch import nn

import snntorch

from scnn.engine.recurrent import FusedRLeakySequence, check_engine, fused_sequence_applies
from scnn.neurons.base import (SpikingNeuron, check_lif_arguments, make_surrogate, per_channel,
                               register_neuron)


@register_neuron("rleaky")
class RLeaky(SpikingNeuron):
    """Recurrent LIF layer (see the module docstring for the equations).

    Args:
        beta, threshold, surrogate, slope, reset_mechanism, learn_beta, learn_threshold: as
            :class:`scnn.neurons.Leaky` (beta in [0, 1], threshold > 0).
        num_channels, channel_dims: if num_channels is given, one beta and one threshold per
            channel (dimension 1 of ``[B, C, ...]``; channel_dims trailing dimensions after it).
        size: neurons of a dense layer (channel_dims 0) or channels of a convolution's maps
            (channel_dims 2); needed for all-to-all recurrence (models always pass it).
        all_to_all: recurrent weights between every pair (True) or one weight V per neuron to itself.
        V: the one-to-one recurrent weight (initial value); learn_recurrent: train the recurrent weights.
        recurrent_kernel: kernel of the all-to-all recurrent convolution on conv maps (odd).
        engine: "fused" runs a whole sequence in :class:`scnn.engine.recurrent.FusedRLeakySequence`
            (fast-sigmoid surrogate, CPU/CUDA floats; otherwise the loop); "loop" steps snntorch's module.
    """

    takes_layer_size = True

    def __init__(self, beta: float = 0.5, threshold: float = 1.0, surrogate: str = "fast_sigmoid",
                 slope: float = 25.0, reset_mechanism: str = "subtract", learn_beta: bool = False,
                 learn_threshold: bool = False, num_channels: int | None = None, channel_dims: int = 0,
                 size: int | None = None, all_to_all: bool = True, V: float = 1.0, learn_recurrent: bool = True,
                 recurrent_kernel: int = 3, engine: str = "fused"):
        super().__init__()
        self.engine = check_engine(engine, surrogate)
        check_lif_arguments(reset_mechanism, beta, threshold)
        recurrent = {}
        if all_to_all:
            if size is None or int(size) < 1:
                raise ValueError(f"RLeaky with all_to_all=True needs size (the layer's neurons or channels), "
                                 f"got {size!r}")
            if channel_dims == 0:
                recurrent = {"linear_features": int(size)}
            elif channel_dims == 2:
                if recurrent_kernel < 1 or recurrent_kernel % 2 == 0:
                    raise ValueError(f"recurrent_kernel must be odd and positive, got {recurrent_kernel}")
                recurrent = {"conv2d_channels": int(size), "kernel_size": int(recurrent_kernel)}
            else:
                raise ValueError(f"RLeaky all-to-all takes dense (channel_dims 0) or conv maps (2), got {channel_dims}")
        self.slope = float(slope)
        self.rleaky = snntorch.RLeaky(
            beta=per_channel(beta, num_channels, channel_dims),
            threshold=per_channel(threshold, num_channels, channel_dims),
            V=float(V), all_to_all=bool(all_to_all), spike_grad=make_surrogate(surrogate, slope),
            reset_mechanism=reset_mechanism, learn_beta=learn_beta, learn_threshold=learn_threshold,
            learn_recurrent=learn_recurrent, **recurrent)
        self.register_state("spike")  # single-step state [B, ...]
        self.register_state("membrane")

    @property
    def beta(self) -> torch.Tensor:
        return self.rleaky.beta

    @property
    def threshold(self) -> torch.Tensor:
        return self.rleaky.threshold

    @property
    def reset_mechanism(self) -> str:
        return self.rleaky.reset_mechanism

    def neuron_parameters(self) -> dict[str, torch.Tensor]:
        """beta and threshold (snntorch's tensors); the recurrent weights are :meth:`recurrent_synapses`."""
        return {"beta": self.rleaky.beta, "threshold": self.rleaky.threshold}

    def forward(self, current: torch.Tensor, return_membrane: bool = True,
                overwrite_current: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """current ``[T, B, ...]`` from a zero state -> (spikes, membranes) ``[T, B, ...]`` (membranes None
        unless ``return_membrane``). The fused engine when it applies, else steps snntorch's module;
        ``overwrite_current`` is not used."""
        if fused_sequence_applies(self.engine, current):
            source = self.rleaky
            if source.all_to_all:
                recurrent = source.recurrent
                kind = "linear" if isinstance(recurrent, nn.Linear) else "conv2d"
                weight, bias = recurrent.weight, recurrent.bias
                padding = recurrent.padding[0] if kind == "conv2d" else 0
            else:
                kind, weight, bias, padding = "one_to_one", source.recurrent.V, None, 0
            spikes, membranes = FusedRLeakySequence.apply(current, source.beta, source.threshold, weight, bias,
                                                          self.slope, source.reset_mechanism == "zero", kind, padding)
            return spikes, membranes if return_membrane else None
        spike, membrane = torch.zeros_like(current[0]), torch.zeros_like(current[0])
        spikes, membranes = [], []
        for current_t in current:
            spike, membrane = self.rleaky(current_t, spike, membrane)
            spikes.append(spike)
            membranes.append(membrane)
        return torch.stack(spikes), torch.stack(membranes) if return_membrane else None

    def step(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: current ``[B, ...]`` -> (spike, membrane) ``[B, ...]``, state kept until reset()."""
        if self.membrane is None or self.membrane.shape != current.shape:
            self.spike, self.membrane = torch.zeros_like(current), torch.zeros_like(current)
        self.spike, self.membrane = self.rleaky(current, self.spike, self.membrane)
        return self.spike, self.membrane

    @property
    def spike_function(self):
        return self.rleaky.spike_grad

    def recurrent_synapses(self) -> list[nn.Module]:
        """The recurrent weights: a Linear or Conv2d (all-to-all) or snntorch's one-to-one module (``.V``)."""
        return [self.rleaky.recurrent]

    def snntorch_equivalent(self, init_hidden: bool = False, output: bool = False) -> nn.Module:
        """A ``snntorch.RLeaky`` with copies of this neuron's parameters and recurrent weights."""
        import copy

        source = self.rleaky
        twin = snntorch.RLeaky(beta=source.beta.detach().clone(), threshold=source.threshold.detach().clone(),
                               V=1.0 if source.all_to_all else source.recurrent.V.detach().clone(),
                               all_to_all=source.all_to_all, linear_features=source.linear_features,
                               conv2d_channels=source.conv2d_channels, kernel_size=source.kernel_size,
                               spike_grad=source.spike_grad, reset_mechanism=source.reset_mechanism,
                               init_hidden=init_hidden, output=output)
        if source.all_to_all:
            twin.recurrent = copy.deepcopy(source.recurrent)
        return twin
