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



class LogitsOnly(torch.nn.Module):
    """``model`` with only its logits returned: features ``[B, ...]`` -> logits ``[B, classes]``.

    Tracers and exporters (fvcore's FLOP count, the ONNX exports) take modules that return
    tensors; every model here returns a :class:`NetOutput`. The wrapped model is the attribute
    ``model`` (fvcore names its layers ``model.<name>``).
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits
