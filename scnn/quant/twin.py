"""Quantised spiking models: a Brevitas twin of any spec model, trained in fake quantisation,
that an integer-only program (:mod:`scnn.quant.integer`) reproduces exactly.

Why it is exact: every scale is a power of two (Brevitas's fixed-point quantisers), so a
fake-quantised value is an integer times ``2**e`` and float32 holds it without rounding
as long as the integer stays below 2**24 (checked: the largest accumulator here, Model A's
12,544-input layer fed by spikes, is below 1.6e6). The LIF runs on an integer grid too.

Data flow of a quantised spiking model (``e_*`` are base-2 exponents of scales)::

    x [B, C, H, W] float --QuantIdentity (act_bits, signed)--> q_in * 2**e_in
    synapse: QuantConv2d / QuantLinear, weights w_q * 2**e_w (weight_bits, per tensor or
             per output channel), Int32 bias on the accumulator grid 2**(e_in + e_w)
    current on the state grid:  I = round(acc * 2**(e_in + e_w - e_u))    (half to even)
    integer LIF (state_bits, membrane U and threshold in units of 2**e_u):
        U[t] = sat(leak(U[t-1]) + I[t] - S[t-1] * thr)          subtract reset
        U[t] = sat(leak((1 - S[t-1]) * U[t-1]) + I[t])           zero reset
        leak(U) = U - floor(U / 2**k)         beta = 1 - 2**-k    (leak="shift", no multiplier)
        leak(U) = floor(U * beta_q / 2**f)    beta = beta_q / 2**f (leak="fixed", f = leak_bits)
        S[t] = U[t] > thr
    spikes (0/1, scale 1) feed the next synapse; logits = sum_t U[t] * 2**e_u of the classifier.

In training, rounding, flooring and saturation pass gradients straight through and the
spike uses the float model's surrogate on ``(U - thr) * 2**e_u``. The ReLU control CNN
quantises its activations with Brevitas's unsigned fixed-point quantiser (act_bits).

Why not snntorch's ``state_quant``: it snaps the membrane to the nearest of a list of
float levels spread around the threshold, after a float update, so the update itself is
not integer arithmetic and the levels are not aligned with the synaptic accumulators; an
integer program could not reproduce it bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
from torch import nn

from scnn.models.outputs import NetOutput
from scnn.models.registry import model_from_dict, model_to_dict
from scnn.models.spec_net import SpecNet
from scnn.neurons.base import SpikingNeuron
from scnn.quant.config import QuantConfig
from scnn.quant.quantizers import get_weight_quantizer

MAX_LEAK_SHIFT = 15






# --------------------------------------------------------------------------- straight-through rounding


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """Floor in the forward pass, identity gradient."""
    return x + (torch.floor(x) - x).detach()


def leak_shift_for(beta: torch.Tensor) -> torch.Tensor:
    """k in 0..15 whose 1 - 2**-k is nearest to each beta (k = 0 gives beta 0)."""
    candidates = torch.arange(MAX_LEAK_SHIFT + 1, dtype=torch.float32)
    values = 1 - 2.0 ** -candidates
    distance = (beta.detach().float().clamp(0, 1).unsqueeze(-1) - values).abs()
    return distance.argmin(-1).float()


# --------------------------------------------------------------------------- the quantised LIF


class QuantLIF(nn.Module):
    """Integer-grid LIF (see the module docstring); beta and threshold fixed from the float LIF.

    Buffers (saved in the state dict): ``state_exponent`` e_u (membrane unit 2**e_u, set by
    :func:`calibrate`), ``threshold_int`` (threshold in membrane units), ``leak_shift`` k or
    ``leak_multiplier`` beta_q (per channel when the float LIF had per-channel beta).
    """

    def __init__(self, lif: SpikingNeuron, config: QuantConfig):
        super().__init__()
        parameters = lif.lif_parameters()
        if parameters is None:
            raise ValueError(f"cannot quantise neuron {type(lif).__name__}: the integer LIF implements first-order "
                             "LIF neurons only (its lif_parameters() is None)")
        self.bits, self.leak_mode, self.leak_bits = config.state_bits, config.leak, config.leak_bits
        self.reset_to_zero = parameters.reset_to_zero
        self.spike_function = lif.spike_function
        beta = parameters.beta.detach().clone().float()
        self.register_buffer("threshold", parameters.threshold.detach().clone().float())
        self.register_buffer("leak_shift", leak_shift_for(beta))
        self.register_buffer("leak_multiplier", torch.round(beta.clamp(0, 1) * 2 ** self.leak_bits))
        self.register_buffer("state_exponent", torch.tensor(0.0))
        self.register_buffer("threshold_int", torch.tensor(0.0))
        self.set_state_exponent(0)

    @property
    def state_limits(self) -> tuple[int, int]:
        return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

    def set_state_exponent(self, exponent: int) -> None:
        """Membrane unit 2**exponent; the threshold becomes round(thr / unit), at least 1."""
        self.state_exponent.fill_(float(exponent))
        threshold_int = torch.round(self.threshold / 2.0 ** exponent).clamp(min=1)
        if float(threshold_int.max()) >= self.state_limits[1]:
            raise ValueError(f"threshold {self.threshold.tolist()} does not fit {self.bits}-bit state at unit 2^{exponent}")
        self.threshold_int = threshold_int

    @property
    def effective_beta(self) -> torch.Tensor:
        """The leak the integer neuron applies (before flooring)."""
        if self.leak_mode == "shift":
            return 1 - 2.0 ** -self.leak_shift
        return self.leak_multiplier / 2 ** self.leak_bits

    def _leak(self, membrane: torch.Tensor) -> torch.Tensor:
        if self.leak_mode == "shift":
            return membrane - floor_ste(membrane * 2.0 ** -self.leak_shift)
        return floor_ste(membrane * (self.leak_multiplier / 2 ** self.leak_bits))

    def forward(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """current ``[T, B, ...]`` in real units (an integer times 2**e_acc).

        Returns spikes ``[T, B, ...]`` (0/1) and membranes ``[T, B, ...]`` in real units.
        """
        unit = 2.0 ** self.state_exponent
        low, high = self.state_limits
        grid_current = round_ste(current / unit)
        membrane = torch.zeros_like(grid_current[0])
        spike = torch.zeros_like(membrane)
        spikes, membranes = [], []
        for current_t in grid_current:
            previous = spike.detach()
            kept = membrane * (1 - previous) if self.reset_to_zero else membrane
            membrane = self._leak(kept) + current_t
            if not self.reset_to_zero:
                membrane = membrane - previous * self.threshold_int
            membrane = membrane.clamp(low, high)
            if torch.is_grad_enabled():
                spike = self.spike_function((membrane - self.threshold_int) * unit)
            else:  # plain comparison: traceable for ONNX export
                spike = (membrane > self.threshold_int).to(membrane.dtype)
            spikes.append(spike)
            membranes.append(membrane * unit)
        return torch.stack(spikes), torch.stack(membranes)


# --------------------------------------------------------------------------- the Brevitas twin


def _quant_tensor(value: torch.Tensor, scale: torch.Tensor, bits: int, signed: bool):
    """Wrap a tensor that already lies on the grid ``scale * integers`` as a Brevitas IntQuantTensor."""
    from brevitas.quant_tensor import IntQuantTensor

    return IntQuantTensor(value, scale, torch.zeros((), device=value.device),
                          torch.tensor(float(bits), device=value.device), signed, value.requires_grad)


def _value(x) -> torch.Tensor:
    """The float value of a QuantTensor, or the tensor itself."""
    return x.value if hasattr(x, "value") else x


class QuantBlock(nn.Module):
    """Brevitas synapse (int8-style weights, Int32 bias) -> max pool -> QuantLIF, QuantReLU or identity."""

    def __init__(self, block: nn.Module, config: QuantConfig):
        import brevitas.nn as qnn
        from brevitas.quant import Int32Bias, Uint8ActPerTensorFixedPoint

        super().__init__()
        synapse = block.synapse
        self.flatten = isinstance(synapse, nn.Sequential)
        layer = synapse[-1] if self.flatten else synapse
        common = dict(weight_quant=get_weight_quantizer(config.weight_quant).factory(config.per_channel), weight_bit_width=config.weight_bits,
                      bias_quant=Int32Bias, return_quant_tensor=True)
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or layer.padding != (0, 0) or layer.groups != 1 or layer.dilation != (1, 1):
                raise ValueError(f"quantisation supports stride-1, unpadded, ungrouped convolutions, got {layer}")
            self.synapse = qnn.QuantConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, **common)
        elif isinstance(layer, nn.Linear):
            self.synapse = qnn.QuantLinear(layer.in_features, layer.out_features, **common)
        else:
            raise ValueError(f"cannot quantise synapse {type(layer).__name__}: only Conv2d and Linear are supported")
        with torch.no_grad():
            self.synapse.weight.copy_(layer.weight)
            self.synapse.bias.copy_(layer.bias)
        self.dropout = block.dropout
        self.pool = block.pool
        if not isinstance(self.pool, (nn.MaxPool2d, nn.Identity)):
            raise ValueError(f"cannot quantise pooling {type(self.pool).__name__}: only MaxPool2d is supported")
        activation = block.activation
        if isinstance(activation, SpikingNeuron):
            self.activation = QuantLIF(activation, config)
        elif isinstance(activation, nn.ReLU):
            self.activation = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=config.act_bits,
                                            return_quant_tensor=True)
        elif isinstance(activation, nn.Identity):
            self.activation = nn.Identity()
        else:
            raise ValueError(f"cannot quantise activation {type(activation).__name__}")

    def current(self, x) -> torch.Tensor:
        """x: IntQuantTensor ``[N, ...]`` on its grid. Returns the pooled synaptic output ``[N, ...]`` (real units)."""
        if not hasattr(x, "value"):  # Brevitas calibration mode: quantisers off, plain tensors flow
            return self.pool(_value(self.synapse(self.dropout(x).flatten(1) if self.flatten else self.dropout(x))))
        value = self.dropout(x.value)
        if self.flatten:
            value = value.flatten(1)
        y = self.synapse(_quant_tensor(value, x.scale, int(x.bit_width), x.signed))
        return self.pool(_value(y))


class QuantSpecNet(nn.Module):
    """Quantised twin of a :class:`~scnn.models.SpecNet` (see the module docstring).

    Same interface as the float model: ``forward(x [B, C, H, W], record=False) -> NetOutput``
    with logits ``[B, classes]``, so the trainer's evaluation and loss functions apply.
    """

    def __init__(self, float_model: SpecNet, config: QuantConfig):
        import brevitas.nn as qnn
        from brevitas.quant import Int8ActPerTensorFixedPoint

        super().__init__()
        if not isinstance(float_model, SpecNet):
            raise ValueError(f"quantize() takes a spec model (Model A/B, control CNN, a spec string), "
                             f"got {type(float_model).__name__}")
        self.config = float_model.config
        self.family = float_model.family
        self.quant_config = config
        self.float_description = model_to_dict(float_model)
        self.input_quant = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=config.act_bits,
                                             return_quant_tensor=True)
        self.blocks = nn.ModuleList(QuantBlock(block, config) for block in float_model.blocks)

    @property
    def num_steps(self) -> int:
        return self.config.num_steps if self.config.spiking else 1

    def forward(self, x: torch.Tensor, record: bool = False) -> NetOutput:
        if x.dim() != 4:
            raise ValueError(f"quantised models take static input [B, C, H, W] (direct encoding), got shape "
                             f"{tuple(x.shape)}")
        q = self.input_quant(x)
        if not self.config.spiking:
            for block in self.blocks:
                current = block.current(q)
                q = block.activation(current)
            return NetOutput(logits=_value(q))
        layer_spikes = []
        spike_scale = torch.ones((), device=x.device)
        for position, block in enumerate(self.blocks):
            if position == 0:  # static input: the first synapse runs once, its current repeats over T
                current = block.current(q)
                current = current.unsqueeze(0).expand(self.num_steps, *current.shape)
            else:
                steps, batch = spikes.shape[:2]
                folded = spikes.reshape(steps * batch, *spikes.shape[2:])
                current = block.current(_quant_tensor(folded, spike_scale, 1, False))
                current = current.reshape(steps, batch, *current.shape[1:])
            spikes, membrane = block.activation(current)
            if record:
                layer_spikes.append(spikes)
        logits = membrane.sum(0) if self.config.readout == "membrane" else spikes.sum(0)
        return NetOutput(logits=logits, spikes=spikes, membrane=membrane, layer_spikes=layer_spikes)

    def quant_lif_layers(self) -> list[QuantLIF]:
        return [block.activation for block in self.blocks if isinstance(block.activation, QuantLIF)]


# --------------------------------------------------------------------------- building and calibrating


def quantize(model: SpecNet, config: QuantConfig | None = None, calibration_data: torch.Tensor | None = None,
             **fields) -> QuantSpecNet:
    """The Brevitas twin of ``model`` with its weights; calibrated on ``calibration_data`` if given.

    config: a :class:`QuantConfig`, or its fields as keywords (``quantize(model, weight_bits=4)``).
    calibration_data: normalised features ``[N, C, H, W]`` from the training split. Without it
    the activation scales start from Brevitas's defaults and the membrane unit from the
    threshold alone (fine for QAT from scratch, poor for post-training quantisation).
    """
    if config is None:
        config = QuantConfig(**fields)
    elif fields:
        raise TypeError("quantize: pass a QuantConfig or its fields as keywords, not both")
    quantized = QuantSpecNet(model, config)
    for qlif in quantized.quant_lif_layers():
        qlif.set_state_exponent(_state_exponent(float(qlif.threshold.max()) * config.state_range, config.state_bits))
    if calibration_data is not None:
        calibrate(quantized, model, calibration_data)
    return quantized


def _state_exponent(largest: float, bits: int) -> int:
    """Smallest e with (2**(bits-1) - 1) * 2**e >= largest."""
    return math.ceil(math.log2(largest / (2 ** (bits - 1) - 1)))


@torch.no_grad()
def membrane_percentiles(model: SpecNet, x: torch.Tensor, percentile: float = 99.9,
                         batch_size: int = 128, max_values: int = 2_000_000) -> list[float]:
    """Per LIF layer of the float model: the ``percentile`` of |membrane| over neurons, steps, samples."""
    model.eval()
    collected: list[list[torch.Tensor]] = [[] for _ in model.neurons()]
    hooks = [lif.register_forward_hook(lambda module, args, output, index=index: collected[index].append(
        output[1].detach().abs().flatten())) for index, lif in enumerate(model.neurons())]
    try:
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size], record=True)  # record: hidden layers return their membranes
    finally:
        for hook in hooks:
            hook.remove()
    result = []
    for values in collected:
        values = torch.cat(values)
        stride = max(1, len(values) // max_values)  # deterministic subsample: torch.quantile has a size limit
        result.append(float(torch.quantile(values[::stride].float(), percentile / 100)))
    return result


@torch.no_grad()
def calibrate(quantized: QuantSpecNet, float_model: SpecNet, x: torch.Tensor, batch_size: int = 128) -> None:
    """Post-training calibration on training features ``x [N, C, H, W]``.

    Membrane units: the grid covers max(state_range x threshold, 99.9th percentile of the
    float model's |membrane|). Activation scales (input, ReLU): Brevitas's calibration mode.
    """
    from brevitas.graph.calibrate import calibration_mode

    config = quantized.quant_config
    if quantized.config.spiking:
        percentiles = membrane_percentiles(float_model, x, batch_size=batch_size)
        for qlif, largest in zip(quantized.quant_lif_layers(), percentiles):
            floor = float(qlif.threshold.max()) * config.state_range
            qlif.set_state_exponent(_state_exponent(max(largest, floor), config.state_bits))
    quantized.eval()
    with calibration_mode(quantized):
        for start in range(0, len(x), batch_size):
            quantized(x[start:start + batch_size])
    quantized.eval()


# --------------------------------------------------------------------------- saving


def quantized_to_dict(quantized: QuantSpecNet) -> dict:
    """Everything needed to rebuild the quantised model (stored in QAT checkpoints)."""
    return {"float_model": quantized.float_description, "quant_config": asdict(quantized.quant_config)}


def quantized_from_dict(description: dict, state: dict | None = None) -> QuantSpecNet:
    """Rebuild a quantised model from :func:`quantized_to_dict` (and its state dict, if given)."""
    float_model = model_from_dict(description["float_model"])
    quantized = QuantSpecNet(float_model, QuantConfig(**description["quant_config"]))
    if state is not None:
        quantized.load_state_dict(state)
    return quantized.eval()


def model_size_bytes(model: nn.Module, weight_bits: int | None = None) -> int:
    """Bytes of the synaptic parameters: float32 (weight_bits None) or packed weight_bits weights + int32 biases."""
    total = 0
    for name, parameter in model.named_parameters():
        if name.endswith("weight") and parameter.dim() > 1:
            total += parameter.numel() * 4 if weight_bits is None else math.ceil(parameter.numel() * weight_bits / 8)
        elif name.endswith("bias"):
            total += parameter.numel() * 4
    return total
