"""The reference code's execution: every layer at every time step, each neuron stepped with its state.

This is how the paper's public code runs a spiking CNN (one Python loop over T that
calls every convolution, pooling, linear layer and neuron per step). It shares its
parameters with a :class:`~scnn.models.SpecNet`, so the two can be compared on the
same weights: tests check that the fast engine gives the same spikes, membranes and
gradients, and ``benchmarks/bench_engine.py`` measures the speed-up against it.

Neurons run through the neuron interface's single-step mode (``step`` after ``reset_net``), so
any neuron works; for Leaky that is ``snntorch.Leaky`` called with the membrane of the previous
step, exactly the reference code's loop.
"""

from __future__ import annotations

import torch
from torch import nn

from scnn.models.outputs import NetOutput
from scnn.neurons.base import reset_net


class ReferenceNet(nn.Module):
    """Step-by-step twin of a spiking SpecNet (same parameter objects, not copies)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not model.config.spiking:
            raise ValueError("ReferenceNet needs a spiking model")
        self.model = model
        self.num_steps = model.config.num_steps

    def forward(self, x: torch.Tensor) -> NetOutput:
        """x: static input ``[B, C, H, W]``; returns classifier spikes and membrane ``[T, B, classes]``."""
        blocks = self.model.blocks
        spikes_out, membrane_out = [], []
        reset_net(self.model)  # every neuron from rest (U[-1] = 0), as the multi-step forward
        try:
            for _ in range(self.num_steps):
                h = x
                for block in blocks:
                    current = block.pool(block.synapse(block.dropout(h)))
                    h, membrane = block.activation.step(current)
                    h = h.to(current.dtype)  # snntorch's surrogates return float32 spikes; a no-op in float32
                spikes_out.append(h)
                membrane_out.append(membrane)
        finally:
            reset_net(self.model)  # leave no single-step state (nor its graph) behind in the shared model
        spikes, membrane = torch.stack(spikes_out), torch.stack(membrane_out)
        logits = membrane.sum(0) if self.model.config.readout == "membrane" else spikes.sum(0)
        return NetOutput(logits=logits, spikes=spikes, membrane=membrane)
