"""Input encodings: how prepared static features become what a model's network runs on.

Inputs come in two kinds (:data:`INPUT_KINDS`), and every model states which one its network takes
(``model.input_kind``):

* static ``[B, C, ...]``: the same input at every step (direct encoding; the engine runs the layers
  that see it once, :mod:`scnn.engine.network`);
* sequence ``[T, B, ...]``: one input per step: a feature frame, an event bin, or a random draw.

The data path prepares static features ``[B, C, F, W]``. An encoder turns them into the model's
kind, given the model's ``num_steps`` T: it returns the same static tensor (direct) or a sequence
``[T, B, ...]``. A model names its encoder (``model.encoding``; for a spec net its config:
``create_model("model_b", encoding="frames")``) and :func:`model_input` applies it, so anything that
holds prepared features (training, evaluation, metrics) feeds them unchanged. A new encoding is one
function registered here::

    @register_encoder("my_encoding", kind="sequence")
    def my_encoding(x: torch.Tensor, num_steps: int) -> torch.Tensor: ...

``per_frame=True`` says that step t sees column t of ``[B, C, F, W]`` alone (T = W frames, each
``[C, F, 1]``): a model then builds its layers on one frame (:meth:`Encoder.step_shape`).

Random encoders draw from torch's global generator, which :func:`scnn.train.train` seeds
and saves in every checkpoint, so a run and its resume see the same spikes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from scnn.registry import Registry

INPUT_KINDS = ("static", "sequence")
ENCODER_KINDS = INPUT_KINDS


@dataclass(frozen=True)
class Encoder:
    """name; kind: "static" (returns ``[B, ...]``) or "sequence" (returns ``[T, B, ...]``); encode(x, num_steps);
    per_frame: step t sees feature frame t alone (T = the number of frames, each ``[C, F, 1]``)."""

    name: str
    kind: str
    encode: Callable[[torch.Tensor, int], torch.Tensor]
    per_frame: bool = False

    def step_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """What one step sees, for features of ``input_shape`` ``(C, F, W)``: one frame ``(C, F, 1)``
        when ``per_frame``, else the whole map."""
        return (*input_shape[:-1], 1) if self.per_frame else tuple(input_shape)


ENCODERS: Registry = Registry("encoding")


def register_encoder(name: str, kind: str, per_frame: bool = False) -> Callable:
    if kind not in ENCODER_KINDS:
        raise ValueError(f"encoder {name!r}: kind must be one of {ENCODER_KINDS}, got {kind!r}")

    def register(function: Callable) -> Callable:
        ENCODERS[name] = Encoder(name, kind, function, per_frame)
        return function

    return register


def get_encoder(name: str) -> Encoder:
    return ENCODERS.lookup(name)


def model_encoder(model, features: tuple[int, ...] | None = None) -> Encoder:
    """The encoder that turns prepared static features (of shape ``features``, for the message) into what
    ``model`` takes (``model.encoding``). A model whose input kind is "sequence" with a static encoding
    takes sequences only: ValueError saying what to set."""
    encoder = get_encoder(model.encoding)
    if model.input_kind == "sequence" and encoder.kind == "static":
        dims = "C, H, W" if len(model.config.input_shape) == 3 else "..."
        name = getattr(model.config, "spec", type(model).__name__)
        got = f", got {features}" if features is not None else ""
        raise ValueError(f"{name}: input_kind 'sequence' takes [T, B, {dims}]{got}; static features need a "
                         f"sequence encoding (encoding=frames: one feature frame per step; rate; delta), "
                         f"not {encoder.name!r}")
    return encoder


def model_input(model, x: torch.Tensor) -> torch.Tensor:
    """What ``model``'s network runs on, from ``x``: prepared static features ``[B, *input_shape]`` pass
    through the model's encoder (:func:`model_encoder`, at ``model.num_steps`` steps); a sequence
    ``[T, B, ...]`` passes as it is."""
    if x.dim() != len(model.config.input_shape) + 1:
        return x  # a sequence (or a shape the model itself refuses)
    return model_encoder(model, tuple(x.shape)).encode(x, model.num_steps)


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


@register_encoder("frames", kind="sequence", per_frame=True)
def frames(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Frame by frame: step t sees feature frame t (column t of ``[B, C, F, W]``) and nothing later,
    ``[B, C, F, W]`` -> ``[W, B, C, F, 1]``; T is the number of frames W (``num_steps`` is not used).
    A model fed this way can answer while the audio arrives (:mod:`scnn.stream`)."""
    return x.permute(3, 0, 1, 2).unsqueeze(-1)


DELTA_THRESHOLD = 0.5  # in units of the normalised features (one standard deviation per coefficient = 1)


@register_encoder("delta", kind="sequence", per_frame=True)
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
