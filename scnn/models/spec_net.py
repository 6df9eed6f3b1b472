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

Data flow of a spiking model (multi-step)::

    x [B, C, H, W] (static, direct encoding)  or  x [T, B, C, H, W]
      first block's synapse runs once on the static input -> current [B, ...]
      first LIF sees the same current at every step       -> spikes [T, B, ...]
      later synapses run on [T*B, ...] (time folded into the batch)
      classifier LIF                                       -> spikes, membrane [T, B, classes]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from scnn.engine import policy as engine
from scnn.engine.synapses import spike_synapse
from scnn.features.encoders import get_encoder
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

INPUT_KINDS = ("static", "sequence")


@dataclass
class SpecNetConfig:
    """Everything needed to rebuild a spec model (saved inside every checkpoint).

    spec: layer string; spiking: LIF after every layer (else ReLU, no time steps).
    input_shape: (channels, rows, frames) of one sample.
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
        first synapse runs once) or a sequence encoder such as "rate".
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


def _fold(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless layer to ``[T, B, ...]`` in one call by folding T into the batch."""
    steps, batch = x.shape[:2]
    y = function(x.reshape(steps * batch, *x.shape[2:]))
    return y.reshape(steps, batch, *y.shape[1:])


class SpecNet(nn.Module):
    """A CNN from a spec string: spiking (LIF) or control (ReLU). See the module docstring."""

    def __init__(self, config: SpecNetConfig):
        super().__init__()
        self.config = config
        channels, height, width = config.input_shape
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
                pool = nn.MaxPool2d(layers[index + 1].kernel)
            if layer.kind == "conv":
                synapse = nn.Conv2d(channels, layer.size, layer.kernel)
                channels, height, width = layer.size, height - layer.kernel + 1, width - layer.kernel + 1
                if pool is not None:
                    height, width = height // pool.kernel_size, width // pool.kernel_size
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
        return self.config.num_steps if self.config.spiking else 1

    def forward(self, x: torch.Tensor, record: bool = False) -> NetOutput:
        """x: static ``[B, C, H, W]`` (direct encoding, repeated over ``num_steps``) or ``[T, B, C, H, W]``."""
        if self.config.input_kind == "sequence" and x.dim() != 5:
            raise ValueError(f"{self.config.spec}: input_kind 'sequence' takes [T, B, C, H, W], got {tuple(x.shape)}")
        if not self.config.spiking:
            for block in self.blocks:
                x = block.activation(block.current(x))
            return NetOutput(logits=x)
        if x.dim() == 4:
            x = get_encoder(self.config.encoding).encode(x, self.num_steps)

        layer_spikes, last = [], len(self.blocks) - 1
        current = None  # set when the previous block's fused kernel already computed this block's current
        for position, block in enumerate(self.blocks):
            if current is None and position == 0 and x.dim() == 4:
                # Static input: the first synapse gives the same current at every step; run it once.
                static = block.current(x)
                if (not record and position < last
                        and engine.grouped_training_applies(block.activation, static, self.num_steps, self.blocks[1])):
                    # Training: the first LIF and the dense layer after it as one grouped product.
                    current = engine.static_lif_into_dense_training(block.activation, static, self.num_steps,
                                                                    self.blocks[1])
                    continue
                current = static.unsqueeze(0).expand(self.num_steps, *static.shape)
            elif current is None:
                current = self._current(position, block, x)
            if not record and position < last:
                # Inference: this LIF fused with the next dense layer (scnn.engine), when that applies.
                spikes, next_current = engine.lif_into_dense(block.activation, current, self.blocks[position + 1])
                if spikes is not None or next_current is not None:
                    x, current = spikes, next_current
                    continue
            # Hidden membranes are only returned when recording (dynamics hooks read them). A
            # synapse's output is read by nobody but the LIF, which may keep its membranes in it.
            scratch = torch.is_grad_enabled() and (position > 0 or x.dim() == 5) and not engine.observed(block)
            x, membrane = block.activation(current, return_membrane=record or position == last,
                                           overwrite_current=scratch)
            current = None
            if record:
                layer_spikes.append(x)
        return self._readout(x, membrane, layer_spikes)

    def _current(self, position: int, block: Block, x: torch.Tensor) -> torch.Tensor:
        """Input current ``[T, B, ...]`` of block ``position`` from its input x ``[T, B, ...]``."""
        if position == 0:
            return _fold(block.current, x)  # time-varying input [T, B, ...]: not spikes
        return _fold(block.spike_current, x)

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

    @property
    def input_kind(self) -> str:
        """"static" or "sequence": the input this model takes (see :class:`SpecNetConfig`)."""
        return self.config.input_kind

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












