"""Input encodings: how a static feature map becomes what a spiking model sees at each step.

An encoder takes the static features ``x [B, C, F, W]`` and the model's ``num_steps`` T and
returns either the same static tensor (the model repeats it: direct encoding, the first
synapse runs once) or a sequence ``[T, B, C, F, W]`` (one input per step). A spec net names
its encoder in its config (``create_model("model_b", encoding="rate")``); a new encoding is
one function registered here::

    @register_encoder("my_encoding", kind="sequence")
    def my_encoding(x: torch.Tensor, num_steps: int) -> torch.Tensor: ...

Random encoders draw from torch's global generator, which :func:`scnn.train.train` seeds
and saves in every checkpoint, so a run and its resume see the same spikes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from scnn.registry import Registry

ENCODER_KINDS = ("static", "sequence")


@dataclass(frozen=True)
class Encoder:
    """name; kind: "static" (returns ``[B, ...]``) or "sequence" (returns ``[T, B, ...]``); encode(x, num_steps)."""

    name: str
    kind: str
    encode: Callable[[torch.Tensor, int], torch.Tensor]


ENCODERS: Registry = Registry("encoding")


def register_encoder(name: str, kind: str) -> Callable:
    if kind not in ENCODER_KINDS:
        raise ValueError(f"encoder {name!r}: kind must be one of {ENCODER_KINDS}, got {kind!r}")

    def register(function: Callable) -> Callable:
        ENCODERS[name] = Encoder(name, kind, function)
        return function

    return register


def get_encoder(name: str) -> Encoder:
    return ENCODERS.lookup(name)


@register_encoder("direct", kind="static")
def direct(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Direct encoding: the real-valued features themselves at every step (the model repeats them)."""
    return x


@register_encoder("rate", kind="sequence")
def rate(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Rate coding: at each step a spike with probability sigmoid(x) (snntorch's ``spikegen.rate``
    on the normalised features squashed into [0, 1]); ``[B, ...]`` -> 0/1 ``[T, B, ...]``."""
    probability = torch.sigmoid(x)
    return torch.bernoulli(probability.unsqueeze(0).expand(num_steps, *probability.shape).contiguous())


@register_encoder("frames", kind="sequence")
def frames(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Frame by frame: step t sees feature frame t (column t of ``[B, C, F, W]``) and nothing later,
    ``[B, C, F, W]`` -> ``[W, B, C, F, 1]``; T is the number of frames W (``num_steps`` is not used).
    A model fed this way can answer while the audio arrives (:mod:`scnn.stream`)."""
    return x.permute(3, 0, 1, 2).unsqueeze(-1)


DELTA_THRESHOLD = 0.5  # in units of the normalised features (one standard deviation per coefficient = 1)


@register_encoder("delta", kind="sequence")
def delta(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Delta (temporal-contrast) spikes, frame by frame, as ``snntorch.spikegen.delta(..., off_spike=True)``:
    step t compares feature frame t with frame t - 1 (a zero frame before the first) and emits +1 where
    a coefficient rose by at least ``DELTA_THRESHOLD``, -1 where it fell by at least as much, else 0.
    ``[B, C, F, W]`` -> ``[W, B, C, F, 1]`` in {-1, 0, 1}; causal (step t sees frames t - 1 and t);
    T is the number of frames W (``num_steps`` is not used). The input shape is that of :func:`frames`."""
    sequence = frames(x, num_steps)
    previous = torch.cat([torch.zeros_like(sequence[:1]), sequence[:-1]])
    change = sequence - previous
    return (change >= DELTA_THRESHOLD).to(x.dtype) - (-change >= DELTA_THRESHOLD).to(x.dtype)
