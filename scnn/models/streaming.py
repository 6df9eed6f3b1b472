"""Streaming keyword spotters: spiking networks fed one feature frame per step.

Models A and B see the whole MFCC image at each of their T steps; these see frame t at step t
(the "frames" encoding, :func:`scnn.features.encoders.frames`), keep their neurons' state from
frame to frame, and have an answer at every frame: they can listen as the audio arrives
(:class:`scnn.stream.Streamer`). Nothing in a step looks at a later frame (tested).

Layers (every one a spec-net :class:`~scnn.models.spec_net.Block`: synapse -> neuron)::

    x [B, 1, F, W]  --frames-->  [T=W, B, 1, F, 1]
      frequency convolution: Conv2d(1, channels, (kernel, 1), padding kernel // 2), the same
        1-D kernel over the F coefficients of each frame        -> neuron (``conv_neuron``)
      hidden dense layers ``hidden`` (e.g. 128-128), each       -> neuron (``neuron``, e.g. ALIF)
      classifier Linear(hidden[-1], classes)                    -> leaky readout neuron
    per-frame class evidence: the readout membrane [T, B, classes]; logits: its sum over frames

Presets: ``streaming`` (adaptive LIF hidden layers, Bellec et al. 2018) and ``streaming_rleaky``
(recurrent LIF hidden layers), both on the "causal" feature preset (20 causal MFCCs, 64 frames
of 16 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from scnn.engine.network import sequence_current
from scnn.features.encoders import model_input
from scnn.models.outputs import NetOutput
from scnn.models.registry import register_family, register_model
from scnn.models.spec_net import Block
from scnn.neurons.base import NEURONS, SpikingNeuron, create_neuron


@dataclass
class StreamingNetConfig:
    """Everything needed to rebuild a streaming model (saved inside every checkpoint).

    input_shape: (1, coefficients F, frames W) of one sample; num_classes (None: 10).
    channels, kernel: the frequency convolution (odd kernel, zero-padded: F stays F).
    hidden: sizes of the dense spiking layers. conv_neuron, neuron: registered neurons of the
    convolution and of the hidden layers; neuron_options: further keyword arguments of the
    hidden neuron (e.g. ``{"rho": 0.95}`` for ALIF, ``{"all_to_all": False}`` for RLeaky).
    beta, threshold, surrogate, surrogate_slope, reset_mechanism, learn_beta, learn_threshold,
    per_channel_beta: as in :class:`~scnn.models.spec_net.SpecNetConfig`, for every neuron.
    readout_beta: leak of the classifier's membrane (the evidence integrates over ~1/(1-beta) frames).
    dropout: before every hidden dense layer but the first.
    """

    input_shape: tuple[int, int, int] = (1, 20, 64)
    num_classes: int | None = None
    channels: int = 16
    kernel: int = 5
    hidden: tuple[int, ...] = (128, 128)
    conv_neuron: str = "leaky"
    neuron: str = "alif"
    neuron_options: dict = field(default_factory=dict)
    beta: float = 0.9
    threshold: float = 1.0
    surrogate: str = "fast_sigmoid"
    surrogate_slope: float = 25.0
    reset_mechanism: str = "subtract"
    learn_beta: bool = True
    learn_threshold: bool = False
    per_channel_beta: bool = True
    readout_beta: float = 0.9
    dropout: float = 0.0
    encoding: str = "frames"  # fixed: what makes the model streaming
    spiking: bool = True
    readout: str = "membrane"

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.hidden = tuple(int(v) for v in self.hidden)
        if len(self.input_shape) != 3 or self.input_shape[0] != 1:
            raise ValueError(f"streaming model: input_shape must be (1, coefficients, frames), got {self.input_shape}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"streaming model: kernel must be odd and positive, got {self.kernel}")
        if self.channels < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"streaming model: channels and hidden sizes must be positive, "
                             f"got channels={self.channels}, hidden={self.hidden}")
        if self.encoding != "frames":
            raise ValueError(f"streaming model: encoding must be 'frames', got {self.encoding!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        for name in (self.conv_neuron, self.neuron):
            if name not in NEURONS:
                raise ValueError(f"unknown neuron {name!r}; registered: {', '.join(sorted(NEURONS))}")


class StreamingNet(nn.Module):
    """Frequency convolution and spiking dense layers run frame by frame (see the module docstring)."""

    def __init__(self, config: StreamingNetConfig):
        super().__init__()
        self.config = config
        _, coefficients, _ = config.input_shape
        self.num_classes = config.num_classes or 10
        conv = nn.Conv2d(1, config.channels, (config.kernel, 1), padding=(config.kernel // 2, 0))
        self.blocks = nn.ModuleList([Block(conv, None, self._neuron(config.conv_neuron, config.channels, 2))])
        width = config.channels * coefficients
        for position, size in enumerate(config.hidden):
            linear = nn.Linear(width, size)
            synapse = nn.Sequential(nn.Flatten(), linear) if position == 0 else linear
            self.blocks.append(Block(synapse, None, self._neuron(config.neuron, size, 0, config.neuron_options),
                                     config.dropout if position > 0 else 0.0))
            width = size
        readout = self._neuron("leaky", self.num_classes, 0, {"beta": config.readout_beta})
        self.blocks.append(Block(nn.Linear(width, self.num_classes), None, readout))

    def _neuron(self, name: str, size: int, channel_dims: int, options: dict | None = None) -> SpikingNeuron:
        config = self.config
        common = dict(beta=config.beta, threshold=config.threshold, surrogate=config.surrogate,
                      slope=config.surrogate_slope, reset_mechanism=config.reset_mechanism,
                      learn_beta=config.learn_beta, learn_threshold=config.learn_threshold,
                      num_channels=size if config.per_channel_beta else None, channel_dims=channel_dims)
        if getattr(NEURONS[name], "takes_layer_size", False):
            common["size"] = size
        return create_neuron(name, **{**common, **(options or {})})

    @property
    def num_steps(self) -> int:
        """Steps per sample: one per frame."""
        return self.config.input_shape[2]

    input_kind = "sequence"  # one feature frame [1, F, 1] per step: [T, B, 1, F, 1]

    @property
    def encoding(self) -> str:
        return self.config.encoding  # "frames": prepared features [B, 1, F, W] -> [W, B, 1, F, 1]

    def forward(self, x: torch.Tensor, record: bool = False) -> NetOutput:
        """x: features ``[B, 1, F, W]`` or frames ``[T, B, 1, F, 1]`` -> NetOutput with the per-frame
        readout membrane ``[T, B, classes]`` and logits (its sum over frames) ``[B, classes]``."""
        x = model_input(self, x)
        if x.dim() != 5:
            raise ValueError(f"streaming model takes [B, 1, F, W] or [T, B, 1, F, 1], got {tuple(x.shape)}")
        layer_spikes, last = [], len(self.blocks) - 1
        membrane = None
        for position, block in enumerate(self.blocks):  # synapse (scnn.engine picks its path) -> neuron
            current = sequence_current(block, x, first=position == 0)
            x, membrane = block.activation(current, return_membrane=record or position == last)
            if record:
                layer_spikes.append(x)
        return NetOutput(logits=membrane.sum(0), spikes=x, membrane=membrane, layer_spikes=layer_spikes)

    def step(self, frame: torch.Tensor) -> NetOutput:
        """One frame ``[B, 1, F]`` (or ``[B, 1, F, 1]``) through every layer, state kept between calls
        until :func:`scnn.neurons.reset_net`; logits: this frame's readout membrane ``[B, classes]``."""
        x = frame.unsqueeze(-1) if frame.dim() == 3 else frame
        for block in self.blocks:
            x, membrane = block.activation.step(block.current(x))
        return NetOutput(logits=membrane, spikes=x.unsqueeze(0), membrane=membrane.unsqueeze(0))

    def neurons(self) -> list[SpikingNeuron]:
        return [block.activation for block in self.blocks]


register_family("streaming", StreamingNetConfig, StreamingNet)
register_model("streaming", "streaming", neuron="alif")
register_model("streaming_rleaky", "streaming", neuron="rleaky")
