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

The recurrent (:class:`QuantRLeaky`: quantised recurrent weights, their current requantised on
its own), second-order (:class:`QuantSynaptic`: a saturating synaptic-current state) and adaptive
(:class:`QuantALIF`: a saturating threshold-increase state) neurons extend this update on the same
grid; docs/integer_format.md gives each update order. Each quantised neuron is registered for its
float neuron's class (:func:`register_quant_neuron`) and reads it only through the neuron interface.
Streaming models (:class:`~scnn.models.streaming.StreamingNet`) are quantised the same way: the input
quantiser runs on the whole feature map, frame t feeds the (zero-padded) frequency convolution at step t.

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
from scnn.neurons.alif import ALIF
from scnn.neurons.base import SpikingNeuron
from scnn.neurons.leaky import LIF
from scnn.neurons.rleaky import RLeaky
from scnn.neurons.synaptic import Synaptic
from scnn.quant.config import QuantConfig
from scnn.quant.quantizers import get_weight_quantizer

MAX_LEAK_SHIFT = 15

QUANT_NEURONS: dict[type, type] = {}


def register_quant_neuron(neuron_class: type):
    """Class decorator: the quantised twin of ``neuron_class`` (and of its subclasses), a :class:`QuantLIF`
    subclass built as ``cls(neuron, config, layer)`` that reads the float neuron through the neuron interface
    (``neuron_parameters()``, ``reset_mechanism``, ``recurrent_synapses()``, ``spike_function``)."""

    def register(cls: type) -> type:
        QUANT_NEURONS[neuron_class] = cls
        return cls

    return register


def _float_neuron_constants(neuron: SpikingNeuron) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(beta, threshold, reset_to_zero) of a LIF-family float neuron, from the neuron interface."""
    parameters = neuron.neuron_parameters()
    return parameters["beta"], parameters["threshold"], neuron.reset_mechanism == "zero"


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


@register_quant_neuron(LIF)
class QuantLIF(nn.Module):
    """Integer-grid LIF (see the module docstring); beta and threshold fixed from the float neuron.

    Buffers (saved in the state dict): ``state_exponent`` e_u (membrane unit 2**e_u, set by
    :func:`calibrate`), ``threshold_int`` (threshold in membrane units), ``leak_shift`` k or
    ``leak_multiplier`` beta_q (per channel when the float neuron had per-channel beta).

    The second-order, recurrent and adaptive neurons below subclass it: they share the membrane
    grid, the leak and the threshold, and replace :meth:`advance` (one step of their update).
    ``kind``: the activation's ``type`` in the integer artefact (docs/integer_format.md).
    """

    kind = "lif"

    def __init__(self, lif: SpikingNeuron, config: QuantConfig, layer: str = "a layer"):
        super().__init__()
        beta, threshold, reset_to_zero = self._float_constants(lif, layer)
        self.bits, self.leak_mode, self.leak_bits = config.state_bits, config.leak, config.leak_bits
        self.reset_to_zero = reset_to_zero
        self.spike_function = lif.spike_function
        beta = beta.detach().clone().float()
        self.register_buffer("threshold", threshold.detach().clone().float())
        self.register_buffer("leak_shift", leak_shift_for(beta))
        self.register_buffer("leak_multiplier", torch.round(beta.clamp(0, 1) * 2 ** self.leak_bits))
        self.register_buffer("state_exponent", torch.tensor(0.0))
        self.register_buffer("threshold_int", torch.tensor(0.0))

    def _float_constants(self, lif: SpikingNeuron, layer: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(beta, threshold, reset_to_zero) of the float neuron."""
        parameters = lif.lif_parameters()
        if parameters is None:
            raise ValueError(f"{layer}: cannot quantise neuron {type(lif).__name__}: QuantLIF implements first-order "
                             "LIF neurons only (its lif_parameters() is None)")
        return parameters.beta, parameters.threshold, parameters.reset_to_zero

    @property
    def state_limits(self) -> tuple[int, int]:
        return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

    def range_floor(self) -> float:
        """The largest threshold the membrane must reach (the grid covers ``state_range`` times this)."""
        return float(self.threshold.max())

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
        return self._effective(self.leak_shift, self.leak_multiplier)

    def _effective(self, shift: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        if self.leak_mode == "shift":
            return 1 - 2.0 ** -shift
        return multiplier / 2 ** self.leak_bits

    def _leak(self, membrane: torch.Tensor, shift: torch.Tensor | None = None,
              multiplier: torch.Tensor | None = None) -> torch.Tensor:
        """leak(U) on the integer grid: U - floor(U / 2**k) ("shift") or floor(U * beta_q / 2**f) ("fixed")."""
        shift = self.leak_shift if shift is None else shift
        multiplier = self.leak_multiplier if multiplier is None else multiplier
        if self.leak_mode == "shift":
            return membrane - floor_ste(membrane * 2.0 ** -shift)
        return floor_ste(membrane * (multiplier / 2 ** self.leak_bits))

    def _fire(self, membrane: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        """S = U > threshold (both in state units); the surrogate gradient in training."""
        if torch.is_grad_enabled():
            return self.spike_function((membrane - threshold) * 2.0 ** self.state_exponent)
        return (membrane > threshold).to(membrane.dtype)  # plain comparison: traceable for ONNX export

    def initial_state(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The state at t = -1 (all zero), shaped like one step's current ``[B, ...]``."""
        return {"membrane": torch.zeros_like(like), "spike": torch.zeros_like(like)}

    def advance(self, current: torch.Tensor, state: dict) -> dict:
        """One step: current I[t] ``[B, ...]`` (state units) and the state at t-1 -> the state at t."""
        previous = state["spike"].detach()
        membrane = state["membrane"]
        kept = membrane * (1 - previous) if self.reset_to_zero else membrane
        membrane = self._leak(kept) + current
        if not self.reset_to_zero:
            membrane = membrane - previous * self.threshold_int
        membrane = membrane.clamp(*self.state_limits)
        return {"membrane": membrane, "spike": self._fire(membrane, self.threshold_int)}

    def forward(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """current ``[T, B, ...]`` in real units (an integer times 2**e_acc).

        Returns spikes ``[T, B, ...]`` (0/1) and membranes ``[T, B, ...]`` in real units.
        """
        unit = 2.0 ** self.state_exponent
        grid_current = round_ste(current / unit)
        state = self.initial_state(grid_current[0])
        spikes, membranes = [], []
        for current_t in grid_current:
            state = self.advance(current_t, state)
            spikes.append(state["spike"])
            membranes.append(state["membrane"] * unit)
        return torch.stack(spikes), torch.stack(membranes)


@register_quant_neuron(RLeaky)
class QuantRLeaky(QuantLIF):
    """Integer-grid recurrent LIF (:class:`scnn.neurons.RLeaky`): the recurrent synapse is quantised like
    every other synapse, its current requantised to the membrane grid on its own::

        R[t] = round_half_even(acc_rec[t] * 2**(e_rec - e_u)),  acc_rec = W_rec_int . S[t-1] + b_rec_int
               (one-to-one: acc_rec = S[t-1] * V_int, e_rec = e_V)
        sum  = leak(U[t-1]) + I[t] + R[t]
        U[t] = clip(sum - S[t-1] * thr)  (subtract)   or   U[t] = (1 - S[t-1]) * clip(sum)  (zero, snntorch's)
        S[t] = U[t] > thr

    ``recurrent``: a Brevitas QuantLinear / QuantConv2d (all-to-all, Int32 bias), or for one-to-one
    ``recurrent_v`` (a parameter, power-of-two per-tensor fixed point of ``weight_bits``, as Brevitas's).
    """

    kind = "rlif"

    def __init__(self, neuron: SpikingNeuron, config: QuantConfig, layer: str = "a layer"):
        import brevitas.nn as qnn
        from brevitas.quant import Int32Bias

        super().__init__(neuron, config, layer)
        self.weight_bits = config.weight_bits
        source = neuron.recurrent_synapses()[0]
        self.all_to_all = isinstance(source, (nn.Linear, nn.Conv2d))
        common = dict(weight_quant=get_weight_quantizer(config.weight_quant).factory(config.per_channel),
                      weight_bit_width=config.weight_bits, bias_quant=Int32Bias, return_quant_tensor=True)
        if isinstance(source, nn.Linear):
            self.recurrent = qnn.QuantLinear(source.in_features, source.out_features, bias=source.bias is not None,
                                             **common)
        elif isinstance(source, nn.Conv2d):
            _check_conv(source, f"{layer} (recurrent convolution)")
            self.recurrent = qnn.QuantConv2d(source.in_channels, source.out_channels, source.kernel_size,
                                             padding=source.padding, bias=source.bias is not None, **common)
        elif hasattr(source, "V"):
            if not get_weight_quantizer(config.weight_quant).integer_exact:
                raise ValueError(f"{layer}: the one-to-one recurrent weight V is quantised with power-of-two scales "
                                 f"only; weight_quant {config.weight_quant!r} is not supported for it")
            self.recurrent_v = nn.Parameter(torch.as_tensor(source.V).detach().clone().float())
            return
        else:
            raise ValueError(f"{layer}: cannot quantise the recurrent synapse {type(source).__name__} of "
                             f"{type(neuron).__name__} (Linear, Conv2d or one-to-one V only)")
        with torch.no_grad():
            self.recurrent.weight.copy_(source.weight)
            if source.bias is not None:
                self.recurrent.bias.copy_(source.bias)

    def _float_constants(self, neuron, layer):
        return _float_neuron_constants(neuron)

    def quant_v(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One-to-one weight: (V_int, exponent e_V) with V_int = clip(round(V / 2**e_V), +-(2**(b-1) - 1)) and
        e_V = ceil(log2(max|V| / (2**(b-1) - 1))) (0 when V is 0)."""
        largest = 2 ** (self.weight_bits - 1) - 1
        peak = self.recurrent_v.detach().abs().max()
        exponent = torch.ceil(torch.log2(peak / largest)) if float(peak) > 0 else torch.zeros(())
        integer = round_ste(self.recurrent_v / 2.0 ** exponent).clamp(-largest, largest)
        return integer, exponent

    def recurrent_current(self, spike: torch.Tensor) -> torch.Tensor:
        """R[t] in state units from the previous step's spikes ``[B, ...]``."""
        unit = 2.0 ** self.state_exponent
        if not self.all_to_all:
            integer, exponent = self.quant_v()
            return round_ste(spike * (integer * 2.0 ** exponent) / unit)
        one = torch.ones((), device=spike.device)
        return round_ste(_value(self.recurrent(_quant_tensor(spike, one, 1, False))) / unit)

    def advance(self, current, state):
        previous = state["spike"].detach()
        total = self._leak(state["membrane"]) + current + self.recurrent_current(state["spike"])
        if self.reset_to_zero:
            membrane = total.clamp(*self.state_limits) * (1 - previous)
        else:
            membrane = (total - previous * self.threshold_int).clamp(*self.state_limits)
        return {"membrane": membrane, "spike": self._fire(membrane, self.threshold_int)}


@register_quant_neuron(Synaptic)
class QuantSynaptic(QuantLIF):
    """Integer-grid second-order LIF (:class:`scnn.neurons.Synaptic`): the synaptic current Syn and the
    membrane U share the state grid (unit 2**e_u, ``bits``, saturating), each with its own leak::

        Syn[t] = clip(leak_alpha(Syn[t-1]) + I[t])
        sum    = leak_beta(U[t-1]) + Syn[t]
        U[t]   = clip(sum - S[t-1] * thr)  (subtract)   or   U[t] = (1 - S[t-1]) * clip(sum)  (zero; Syn kept)
        S[t]   = U[t] > thr

    Extra buffers: ``alpha_shift`` / ``alpha_multiplier`` (the synaptic leak, as beta's).
    """

    kind = "synaptic"

    def __init__(self, neuron: SpikingNeuron, config: QuantConfig, layer: str = "a layer"):
        super().__init__(neuron, config, layer)
        alpha = neuron.neuron_parameters()["alpha"].detach().clone().float()
        self.register_buffer("alpha_shift", leak_shift_for(alpha))
        self.register_buffer("alpha_multiplier", torch.round(alpha.clamp(0, 1) * 2 ** self.leak_bits))

    def _float_constants(self, neuron, layer):
        return _float_neuron_constants(neuron)

    def initial_state(self, like):
        return {**super().initial_state(like), "synaptic": torch.zeros_like(like)}

    def advance(self, current, state):
        previous = state["spike"].detach()
        low, high = self.state_limits
        synaptic = (self._leak(state["synaptic"], self.alpha_shift, self.alpha_multiplier) + current).clamp(low, high)
        total = self._leak(state["membrane"]) + synaptic
        if self.reset_to_zero:
            membrane = total.clamp(low, high) * (1 - previous)
        else:
            membrane = (total - previous * self.threshold_int).clamp(low, high)
        return {"membrane": membrane, "synaptic": synaptic, "spike": self._fire(membrane, self.threshold_int)}


@register_quant_neuron(ALIF)
class QuantALIF(QuantLIF):
    """Integer-grid adaptive LIF (:class:`scnn.neurons.ALIF`, Bellec et al. 2018). The adaptation is kept as
    the threshold increase Theta = b * A on the membrane grid (one quantised state, 0..state_max)::

        Theta[t] = clip(leak_rho(Theta[t-1]) + S[t-1] * jump, 0, state_max)
                   jump = round(max(b, 0) * (1 - rho_q) / 2**e_u), rho_q the integer leak's rho
        B[t]     = thr + Theta[t]
        U[t]     = clip(leak(U[t-1]) + I[t] - S[t-1] * B[t])           (subtract: the current threshold)
        U[t]     = clip(leak(U[t-1] * (1 - S[t-1])) + I[t])            (zero)
        S[t]     = U[t] > B[t]

    Extra buffers: ``rho_shift`` / ``rho_multiplier`` (Theta's leak), ``adaptation`` (b, real units) and
    ``jump_int`` (set with the state unit).
    """

    kind = "alif"

    def __init__(self, neuron: SpikingNeuron, config: QuantConfig, layer: str = "a layer"):
        super().__init__(neuron, config, layer)
        parameters = neuron.neuron_parameters()
        rho = parameters["rho"].detach().clone().float()
        self.register_buffer("rho_shift", leak_shift_for(rho))
        self.register_buffer("rho_multiplier", torch.round(rho.clamp(0, 1) * 2 ** self.leak_bits))
        self.register_buffer("adaptation", parameters["adaptation"].detach().clone().float().clamp(min=0))
        self.register_buffer("jump_int", torch.zeros_like(self.adaptation))

    def _float_constants(self, neuron, layer):
        return _float_neuron_constants(neuron)

    def range_floor(self) -> float:
        """A fully adapted neuron's threshold thr + b must fit the grid too."""
        return float((self.threshold + self.adaptation).max())

    def set_state_exponent(self, exponent: int) -> None:
        super().set_state_exponent(exponent)
        rho = self._effective(self.rho_shift, self.rho_multiplier)
        self.jump_int = torch.round(self.adaptation * (1 - rho) / 2.0 ** exponent)

    def initial_state(self, like):
        return {**super().initial_state(like), "adaptation": torch.zeros_like(like)}

    def advance(self, current, state):
        previous = state["spike"].detach()
        low, high = self.state_limits
        theta = self._leak(state["adaptation"], self.rho_shift, self.rho_multiplier) + state["spike"] * self.jump_int
        theta = theta.clamp(0, high)
        threshold = self.threshold_int + theta
        membrane = state["membrane"]
        if self.reset_to_zero:
            membrane = self._leak(membrane * (1 - previous)) + current
        else:
            membrane = self._leak(membrane) + current - previous * threshold
        membrane = membrane.clamp(low, high)
        return {"membrane": membrane, "adaptation": theta, "spike": self._fire(membrane, threshold)}


def quant_neuron(neuron: SpikingNeuron, config: QuantConfig, layer: str) -> QuantLIF:
    """The integer-grid twin of a float neuron: the one registered (:func:`register_quant_neuron`) for its
    class or nearest base class, else :class:`QuantLIF` for any neuron whose ``lif_parameters()`` is not None;
    ValueError naming ``layer`` for a neuron without one."""
    quant_type = next((QUANT_NEURONS[cls] for cls in type(neuron).__mro__ if cls in QUANT_NEURONS), None)
    if quant_type is None:
        if neuron.lif_parameters() is None:
            registered = ", ".join(sorted(getattr(cls, "neuron_name", cls.__name__) for cls in QUANT_NEURONS))
            raise ValueError(f"{layer}: cannot quantise neuron {type(neuron).__name__}: the quantised twin and the "
                             f"integer reference implement the neurons {registered} (register_quant_neuron in "
                             "scnn.quant.twin) and first-order LIFs (lif_parameters() not None)")
        quant_type = QuantLIF
    quantized = quant_type(neuron, config, layer)
    quantized.set_state_exponent(0)  # a unit until quantize() / calibrate() choose one
    return quantized


def _check_conv(layer: nn.Conv2d, name: str) -> None:
    """ValueError naming the layer unless it is a stride-1, undilated, ungrouped, zero-padded convolution."""
    if layer.stride != (1, 1) or layer.groups != 1 or layer.dilation != (1, 1) or layer.padding_mode != "zeros" \
            or isinstance(layer.padding, str):
        raise ValueError(f"{name}: quantisation supports stride-1, ungrouped, undilated convolutions with "
                         f"numeric zero padding, got {layer}")


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

    def __init__(self, block: nn.Module, config: QuantConfig, name: str = "a layer"):
        import brevitas.nn as qnn
        from brevitas.quant import Int32Bias, Uint8ActPerTensorFixedPoint

        super().__init__()
        synapse = block.synapse
        self.flatten = isinstance(synapse, nn.Sequential)
        layer = synapse[-1] if self.flatten else synapse
        common = dict(weight_quant=get_weight_quantizer(config.weight_quant).factory(config.per_channel), weight_bit_width=config.weight_bits,
                      bias_quant=Int32Bias, return_quant_tensor=True)
        if isinstance(layer, nn.Conv2d):
            _check_conv(layer, name)
            self.synapse = qnn.QuantConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                           padding=layer.padding, **common)
        elif isinstance(layer, nn.Linear):
            self.synapse = qnn.QuantLinear(layer.in_features, layer.out_features, **common)
        else:
            raise ValueError(f"{name}: cannot quantise synapse {type(layer).__name__}: only Conv2d and Linear are "
                             "supported")
        with torch.no_grad():
            self.synapse.weight.copy_(layer.weight)
            self.synapse.bias.copy_(layer.bias)
        self.dropout = block.dropout
        self.pool = block.pool
        if not isinstance(self.pool, (nn.MaxPool2d, nn.Identity)):
            raise ValueError(f"{name}: cannot quantise pooling {type(self.pool).__name__}: only MaxPool2d is "
                             "supported")
        activation = block.activation
        if isinstance(activation, SpikingNeuron):
            self.activation = quant_neuron(activation, config, name)
        elif isinstance(activation, nn.ReLU):
            self.activation = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=config.act_bits,
                                            return_quant_tensor=True)
        elif isinstance(activation, nn.Identity):
            self.activation = nn.Identity()
        else:
            raise ValueError(f"{name}: cannot quantise activation {type(activation).__name__}")

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
    """Quantised twin of a :class:`~scnn.models.SpecNet` or a streaming model
    (:class:`~scnn.models.streaming.StreamingNet`); see the module docstring.

    Same interface as the float model: ``forward(x [B, C, H, W], record=False) -> NetOutput``
    with logits ``[B, classes]``, so the trainer's evaluation and loss functions apply. A spec
    net sees its static input at each of ``num_steps`` steps (direct encoding: the first synapse
    runs once); a streaming model sees frame t (column t of ``[B, 1, F, W]``) at step t
    (``sequence``: True), its first synapse run on every frame.
    """

    def __init__(self, float_model: nn.Module, config: QuantConfig):
        import brevitas.nn as qnn
        from brevitas.quant import Int8ActPerTensorFixedPoint

        from scnn.models.streaming import StreamingNet

        super().__init__()
        if not isinstance(float_model, (SpecNet, StreamingNet)):
            raise ValueError(f"quantize() takes a spec model (Model A/B, control CNN, a spec string) or a streaming "
                             f"model, got {type(float_model).__name__}")
        self.sequence = isinstance(float_model, StreamingNet)
        if not self.sequence and (float_model.config.input_kind != "static" or float_model.config.encoding != "direct"):
            raise ValueError(f"quantize(): spec nets are quantised with static input and direct encoding, got "
                             f"input_kind {float_model.config.input_kind!r}, encoding {float_model.config.encoding!r} "
                             "(frame-by-frame input: the streaming presets)")
        self.config = float_model.config
        self.family = float_model.family
        self.quant_config = config
        self.float_description = model_to_dict(float_model)
        self.input_quant = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=config.act_bits,
                                             return_quant_tensor=True)
        self.blocks = nn.ModuleList(QuantBlock(block, config, f"layer {index}")
                                    for index, block in enumerate(float_model.blocks))

    @property
    def num_steps(self) -> int:
        if self.sequence:
            return self.config.input_shape[2]  # one step per frame
        return self.config.num_steps if self.config.spiking else 1

    def _first_current(self, q) -> torch.Tensor:
        """The first block's current ``[T, B, ...]`` from the quantised input q ``[B, C, H, W]``."""
        block = self.blocks[0]
        if not self.sequence:  # static input: the first synapse runs once, its current repeats over T
            current = block.current(q)
            return current.unsqueeze(0).expand(self.num_steps, *current.shape)
        frames = _value(q).permute(3, 0, 1, 2).unsqueeze(-1)  # [W, B, C, F, 1]: frame t at step t
        steps, batch = frames.shape[:2]
        folded = frames.reshape(steps * batch, *frames.shape[2:])
        if hasattr(q, "value"):
            folded = _quant_tensor(folded, q.scale, int(q.bit_width), q.signed)
        current = block.current(folded)
        return current.reshape(steps, batch, *current.shape[1:])

    def forward(self, x: torch.Tensor, record: bool = False) -> NetOutput:
        if x.dim() != 4:
            raise ValueError(f"quantised models take static input [B, C, H, W] (a streaming model cuts it into "
                             f"frames itself), got shape {tuple(x.shape)}")
        q = self.input_quant(x)
        if not self.config.spiking:
            for block in self.blocks:
                current = block.current(q)
                q = block.activation(current)
            return NetOutput(logits=_value(q))
        layer_spikes = []
        spike_scale = torch.ones((), device=x.device)
        for position, block in enumerate(self.blocks):
            if position == 0:
                current = self._first_current(q)
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
        """Every block's quantised neuron (QuantLIF or a subclass), in order."""
        return [block.activation for block in self.blocks if isinstance(block.activation, QuantLIF)]


# --------------------------------------------------------------------------- building and calibrating


def quantize(model: nn.Module, config: QuantConfig | None = None, calibration_data: torch.Tensor | None = None,
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
        qlif.set_state_exponent(_state_exponent(qlif.range_floor() * config.state_range, config.state_bits))
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
            floor = qlif.range_floor() * config.state_range
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
