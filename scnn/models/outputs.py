"""What every model returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class NetOutput:
    """What a model returns.

    logits: ``[B, classes]`` used for predictions (membrane sum or spike count for spiking nets).
    spikes, membrane: classifier spikes and membrane ``[T, B, classes]`` (None for ReLU nets).
    layer_spikes: with ``record=True``, every LIF's spikes ``[T, B, ...]`` in order.
    """

    logits: torch.Tensor
    spikes: torch.Tensor | None = None
    membrane: torch.Tensor | None = None
    layer_spikes: list[torch.Tensor] = field(default_factory=list)

