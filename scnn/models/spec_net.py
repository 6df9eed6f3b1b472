"""Spiking and control CNNs built from the paper's spec notation, created by name.

Spec notation (layers joined by "-"): ``6C3`` = convolution with 6 filters of 3x3
(stride 1, no padding), ``P2`` = 2x2 max pooling, ``128FC`` = fully connected
layer of 128 units. The last layer is the classifier. Presets:

    model_a      6C3-16C3-128FC-64FC-10FC          spiking   1,615,606 parameters on 32x32
    model_b      6C3-128FC-10FC                    spiking     692,678
    control_cnn  6C3-P2-16C3-P2-128FC-64FC-10FC    ReLU         83,702

A block is synapse (conv / linear) -> optional max pooling -> activation (LIF, or
ReLU in the control CNN; max pooling and ReLU commute, so their order does not
matter there). In a spiking model every block, the classifier included, ends in a
LIF, and the classifier's membrane and spikes are the readout.

Inputs (the model states its kind, :attr:`SpecNet.input_kind`): prepared features ``[B, C, H, W]``
go through the config's ``encoding`` (:mod:`scnn.features.encoders`): "direct" keeps them static, the
same input at every one of ``num_steps`` steps; "frames" (and "delta") make a sequence of the W
feature frames, each ``[C, H, 1]``, and the layers are built on one frame (a kxk convolution or
pooling is then k x 1: a frame has no width); "rate" draws a sequence. A sequence ``[T, B, C, H, W]``
may also be given as it is (``input_kind="sequence"``: event bins, or anything made per step).

Data flow of a spiking model (multi-step), run by :func:`scnn.engine.network.run_blocks`::

    x [B, C, H, W] (static, direct encoding)  or  x [T, B, C, H, W] (sequence)
      first block's synapse runs once on the static input -> current [B, ...]
      first LIF sees the same current at every step       -> spikes [T, B, ...]
      later synapses run on [T*B, ...] (time folded into the batch)
      classifier LIF                                       -> spikes, membrane [T, B, classes]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from scnn.engine.network import run_blocks
from scnn.engine.synapses import spike_synapse
from scnn.features.encoders import INPUT_KINDS, get_encoder, model_input
from scnn.models.outputs import NetOutput
from scnn.models.registry import register_family, register_model
from scnn.neurons.base import NEURONS, SpikingNeuron, create_neuron

# --------------------------------------------------------------------------- spec strings

_LAYER_PATTERNS = {
    "conv": re.compile(r"^(?P<size>\d+)C(?P<kernel>\d+)$"),
    "pool": re.compile(r"^P(?P<kernel>\d+)$"),
    "fc": re.compile(r"^(?P<size>\d+)FC$"),
}


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a spec: kind "conv" (size filters, kernel x kernel), "pool" (kernel x kernel) or "fc" (size units)."""

    kind: str
    size: int = 0
    kernel: int = 0


def parse_spec(spec: str) -> list[LayerSpec]:
    """Parse ``"6C3-P2-16C3-128FC-10FC"`` into layers; ValueError naming the bad part."""
    layers = []
    for part in spec.strip().upper().split("-"):
        for kind, pattern in _LAYER_PATTERNS.items():
            match = pattern.match(part)
            if match:
                values = {k: int(v) for k, v in match.groupdict().items()}
                if any(v <= 0 for v in values.values()):
                    raise ValueError(f"spec {spec!r}: layer {part!r} needs positive sizes")
                layers.append(LayerSpec(kind, **values))
                break
        else:
            raise ValueError(
                f"spec {spec!r}: cannot parse layer {part!r}; expected e.g. 6C3 (conv), P2 (max pool), 128FC (dense)"
            )
    if layers[0].kind == "pool":
        raise ValueError(f"spec {spec!r}: cannot start with pooling")
    if layers[-1].kind != "fc":
        raise ValueError(f"spec {spec!r}: the last layer must be the classifier, e.g. 10FC")
    seen_fc = False
    for layer in layers:
        if layer.kind == "fc":
            seen_fc = True
        elif seen_fc:
            raise ValueError(f"spec {spec!r}: convolution or pooling after a dense layer is not supported")
    return layers


# --------------------------------------------------------------------------- config

@dataclass
class SpecNetConfig:
    """Everything needed to rebuild a spec model (saved inside every checkpoint).

    spec: layer string; spiking: LIF after every layer (else ReLU, no time steps).
    input_shape: (channels, rows, frames) of one sample (of the prepared features; for a per-frame
        encoding such as "frames" also accepted as one frame, (channels, rows, 1)).
    num_steps: time steps T; beta, threshold: LIF leak and threshold;
    surrogate, surrogate_slope: spike surrogate gradient; reset_mechanism: "subtract" | "zero";
    learn_beta, learn_threshold: train them; per_channel_beta: one beta per channel;
    readout: "membrane" (membrane summed over steps) or "spike_count" as the logits;
    dropout: probability before every dense layer but the first one fed by a convolution.
    num_classes: size of the classifier, replacing the spec's last layer (None: as the spec says).
    neuron: registered neuron name (:mod:`scnn.neurons`, default "leaky"); neuron_options:
        further keyword arguments of that neuron beyond the common ones above.
    input_kind: what the model is fed: "static" (``[B, C, H, W]`` feature maps) or "sequence"
        (``[T, B, C, H, W]``, one input per step: feature frames or event bins; T comes from the input).
    encoding: for static input, the registered encoder (:mod:`scnn.features.encoders`) that turns it
        into what the neurons see: "direct" (the same input at each of the ``num_steps`` steps, the
        first synapse runs once) or a sequence encoder: "rate", or "frames" / "delta" (step t sees
        feature frame t; T is the number of frames, ``num_steps`` is not used).
    """

    spec: str
    spiking: bool = True
    input_shape: tuple[int, int, int] = (1, 32, 32)
    num_steps: int = 10
    beta: float = 0.5
    threshold: float = 1.0
    surrogate: str = "fast_sigmoid"
    surrogate_slope: float = 25.0
    reset_mechanism: str = "subtract"
    learn_beta: bool = False
    learn_threshold: bool = False
    per_channel_beta: bool = False
    readout: str = "membrane"
    dropout: float = 0.0
    num_classes: int | None = None
    neuron: str = "leaky"
    neuron_options: dict = field(default_factory=dict)
    input_kind: str = "static"
    encoding: str = "direct"

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.readout not in ("membrane", "spike_count"):
            raise ValueError(f"readout must be 'membrane' or 'spike_count', got {self.readout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        get_encoder(self.encoding)
        parse_spec(self.spec)




# --------------------------------------------------------------------------- model


class Block(nn.Module):
    """synapse (conv or flatten+linear) -> optional max pool -> activation (LIF or ReLU)."""

    def __init__(self, synapse: nn.Module, pool: nn.Module | None, activation: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.synapse = synapse
        self.pool = pool if pool is not None else nn.Identity()
        self.activation = activation

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """Input current for the activation: ``[N, ...]`` in, ``[N, ...]`` out."""
        return self.pool(self.synapse(self.dropout(x)))

    def spike_current(self, spikes: torch.Tensor) -> torch.Tensor:
        """:meth:`current` for 0/1 spikes: in training the synapse keeps them as bool for its
        backward pass (:mod:`scnn.engine.synapses`, a quarter of the memory); same values."""
        if torch.is_grad_enabled() and (isinstance(self.dropout, nn.Identity) or not self.training):
            current = spike_synapse(self.synapse, spikes)
            if current is not None:
                return self.pool(current)
        return self.current(spikes)


def _window(size: int, flat: tuple[bool, bool]) -> int | tuple[int, int]:
    """A size x size kernel or pooling window, one wide along an axis the input has not (``flat``)."""
    return size if not any(flat) else (1 if flat[0] else size, 1 if flat[1] else size)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


class SpecNet(nn.Module):
    """A CNN from a spec string: spiking (LIF) or control (ReLU). See the module docstring."""

    def __init__(self, config: SpecNetConfig):
        super().__init__()
        self.config = config
        channels, height, width = self.step_shape
        # A frame [C, F, 1] (or any input one wide) has nothing to slide over along that axis.
        flat = (height == 1, width == 1)
        self.blocks = nn.ModuleList()
        layers = parse_spec(config.spec)
        if config.num_classes is not None:
            layers[-1] = LayerSpec("fc", size=config.num_classes)
        index = 0
        features = None  # set once flattened
        while index < len(layers):
            layer = layers[index]
            pool = None
            if index + 1 < len(layers) and layers[index + 1].kind == "pool":
                pool = nn.MaxPool2d(_window(layers[index + 1].kernel, flat))
            if layer.kind == "conv":
                kernel = _pair(_window(layer.kernel, flat))
                synapse = nn.Conv2d(channels, layer.size, _window(layer.kernel, flat))
                channels, height, width = layer.size, height - kernel[0] + 1, width - kernel[1] + 1
                if pool is not None:
                    pool_size = _pair(pool.kernel_size)
                    height, width = height // pool_size[0], width // pool_size[1]
                if height < 1 or width < 1:
                    raise ValueError(f"spec {config.spec!r}: feature map vanishes on input {config.input_shape}")
                activation = self._activation(num_channels=channels, channel_dims=2)
                dropout = 0.0
            else:
                in_features = features if features is not None else channels * height * width
                linear = nn.Linear(in_features, layer.size)
                synapse = linear if features is not None else nn.Sequential(nn.Flatten(), linear)
                dropout = config.dropout if features is not None else 0.0
                features = layer.size
                is_classifier = index == len(layers) - 1
                activation = self._activation(num_channels=layer.size, channel_dims=0, is_classifier=is_classifier)
            self.blocks.append(Block(synapse, pool, activation, dropout))
            index += 2 if pool is not None else 1
        self.num_classes = features

    def _activation(self, num_channels: int, channel_dims: int, is_classifier: bool = False) -> nn.Module:
        config = self.config
        if not config.spiking:
            return nn.Identity() if is_classifier else nn.ReLU()
        # A neuron with recurrent weights needs the layer's size whether or not beta is per channel.
        size = {"size": num_channels} if getattr(NEURONS.get(config.neuron), "takes_layer_size", False) else {}
        return create_neuron(
            config.neuron, beta=config.beta, threshold=config.threshold, surrogate=config.surrogate,
            slope=config.surrogate_slope, reset_mechanism=config.reset_mechanism,
            learn_beta=config.learn_beta, learn_threshold=config.learn_threshold,
            num_channels=num_channels if config.per_channel_beta else None, channel_dims=channel_dims,
            **size, **config.neuron_options,
        )

    @property
    def num_steps(self) -> int:
        """Steps per sample: ``num_steps``, or the number of frames of a per-frame encoding (1: not spiking)."""
        if not self.config.spiking:
            return 1
        frames = self.config.input_shape[-1]
        return frames if get_encoder(self.encoding).per_frame and frames > 1 else self.config.num_steps

    @property
    def step_shape(self) -> tuple[int, int, int]:
        """What one step of the network sees: ``input_shape``, or one frame of it for a per-frame encoding."""
        return get_encoder(self.encoding).step_shape(self.config.input_shape)

    @property
    def input_kind(self) -> str:
        """"static" (the same input at every step: direct encoding) or "sequence" (``[T, B, ...]``, one input
        per step: given so (``input_kind="sequence"``) or made by a sequence encoding from static features)."""
        if self.config.input_kind == "sequence" or get_encoder(self.encoding).kind == "sequence":
            return "sequence"
        return "static"

    @property
    def encoding(self) -> str:
        """The encoder of static features (:mod:`scnn.features.encoders`); "direct" for the ReLU control CNN."""
        return self.config.encoding if self.config.spiking else "direct"

    def forward(self, x: torch.Tensor, record: bool = False) -> NetOutput:
        """x: prepared features ``[B, C, H, W]`` (turned into the network's input by the encoding) or a
        sequence ``[T, B, C, H, W]``. The network: every block's synapse feeding its neuron, in order."""
        x = model_input(self, x)
        if not self.config.spiking:
            for block in self.blocks:
                x = block.activation(block.current(x))
            return NetOutput(logits=x)
        static = x.dim() == 4  # direct encoding: the same input at every step
        spikes, membrane, layer_spikes = run_blocks(self.blocks, x, self.num_steps if static else None, record)
        return self._readout(spikes, membrane, layer_spikes)

    def _readout(self, spikes: torch.Tensor, membrane: torch.Tensor, layer_spikes: list) -> NetOutput:
        logits = membrane.sum(0) if self.config.readout == "membrane" else spikes.sum(0)
        return NetOutput(logits=logits, spikes=spikes, membrane=membrane, layer_spikes=layer_spikes)

    def step(self, x_t: torch.Tensor) -> NetOutput:
        """Single-step (streaming) mode: one time step ``[B, C, H, W]`` through every layer.

        Neuron state persists between calls until :func:`scnn.neurons.reset_net`. Feeding the
        same static input ``num_steps`` times gives the same spikes as :meth:`forward`.
        ``logits`` here are the classifier's membrane (or spikes) of this step only.
        """
        if not self.config.spiking:
            return self.forward(x_t)
        for block in self.blocks:
            x_t, membrane = block.activation.step(block.current(x_t))
        logits = membrane if self.config.readout == "membrane" else x_t
        return NetOutput(logits=logits, spikes=x_t.unsqueeze(0), membrane=membrane.unsqueeze(0))

    def neurons(self) -> list[SpikingNeuron]:
        """Every block's neuron, in order (empty for the ReLU control CNN)."""
        return [block.activation for block in self.blocks if isinstance(block.activation, SpikingNeuron)]

    lif_layers = neurons  # the first version's name




# --------------------------------------------------------------------------- registry







register_family("spec_net", SpecNetConfig, SpecNet)
register_model("model_a", "spec_net", spec="6C3-16C3-128FC-64FC-10FC")
register_model("model_b", "spec_net", spec="6C3-128FC-10FC")
register_model("control_cnn", "spec_net", spec="6C3-P2-16C3-P2-128FC-64FC-10FC", spiking=False, num_steps=1)
# The benchmark recipes' spiking CNNs (configs/gsc*_cnn.yaml, shd_cnn.yaml, ssc_cnn.yaml), T = 5, beta 0.5:
# on 40x50 MFCC maps of Speech Commands (two 2x2 poolings) and on 140x100 SHD/SSC spike counts (4x4 then 2x2).
register_model("gsc35_cnn", "spec_net", spec="16C3-P2-32C3-P2-128FC-35FC", num_steps=5, beta=0.5)
register_model("gsc12_cnn", "spec_net", spec="16C3-P2-32C3-P2-128FC-12FC", num_steps=5, beta=0.5)
register_model("shd_cnn", "spec_net", spec="16C3-P4-32C3-P2-128FC-20FC", num_steps=5, beta=0.5)
register_model("ssc_cnn", "spec_net", spec="16C3-P4-32C3-P2-128FC-35FC", num_steps=5, beta=0.5)












