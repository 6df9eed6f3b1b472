"""The neuron interface, the neuron registry and the surrogate gradients.

A neuron is the only state in a network. Every neuron module implements
:class:`SpikingNeuron`, so models, the engine, the quantiser, the integer reference
and the metrics talk to it through these methods and never reach into its insides:

* ``forward(current [T, B, ...])`` -> ``(spikes [T, B, ...], membrane [T, B, ...] or None)``:
  multi-step, the whole sequence from a zero state; the neuron picks its own fast path.
* ``step(current [B, ...])`` -> ``(spike, membrane)`` ``[B, ...]``: single-step (streaming),
  the state kept between calls until ``reset()`` (:func:`reset_net` resets a whole model).
* ``state`` (the single-step state tensors by name) and ``reset()``.
* ``lif_parameters()``: for first-order LIF neurons, the numbers the engine's fused kernels,
  the quantised twin and the integer reference implement (None for any other neuron, which
  then runs its own ``forward`` everywhere).
* ``reset_mechanism`` ("subtract" or "zero") and ``neuron_parameters()`` (name -> the neuron's own
  tensors: beta, threshold, and alpha, rho, adaptation where it has them): what the quantised twin,
  the frame runner and the NIR export read. Each of those keeps a registry of neuron class -> its
  twin, frame step or NIR writer; a neuron none of them registers is refused there with a clear error.
* ``spike_function``: the surrogate spike function (Heaviside forward, surrogate backward).
* ``snntorch_equivalent()``: the snntorch module that defines this neuron, if snntorch has one.
* ``recurrent_synapses()``: connection layers inside the neuron (the metrics count their
  synaptic operations); none for a feed-forward neuron.

A new neuron is one module that subclasses :class:`SpikingNeuron` and registers itself::

    @register_neuron("my_neuron")
    class MyNeuron(SpikingNeuron): ...

and ``create_model("model_b", neuron="my_neuron")`` builds Model B with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from snntorch import surrogate as snn_surrogate

from scnn.registry import Registry

SURROGATES = ("fast_sigmoid", "atan", "sigmoid")
RESET_MECHANISMS = ("subtract", "zero")


def make_surrogate(name: str = "fast_sigmoid", slope: float = 25.0):
    """snntorch surrogate-gradient spike function by name.

    fast_sigmoid: d S/dU = 1 / (slope * |U - U_thr| + 1)^2 (snntorch's default slope 25);
    atan: alpha = slope; sigmoid: slope as given.
    """
    if name == "fast_sigmoid":
        return snn_surrogate.fast_sigmoid(slope=slope)
    if name == "atan":
        return snn_surrogate.atan(alpha=slope)
    if name == "sigmoid":
        return snn_surrogate.sigmoid(slope=slope)
    raise ValueError(f"unknown surrogate {name!r}; choose one of {SURROGATES}")


@dataclass(frozen=True)
class LifParameters:
    """What a first-order LIF computes, for the engine, the quantiser and the integer reference.

    beta: leak ``[]`` or per channel ``[C, 1, ...]`` (unclamped; the neuron applies clamp(0, 1));
    threshold: U_thr (same shapes); reset_to_zero: zero reset (else subtract);
    slope: fast-sigmoid surrogate slope; fused: the fused multi-step kernel computes this
    neuron's gradients (fast-sigmoid surrogate), so fused training paths may replace it.
    """

    beta: torch.Tensor
    threshold: torch.Tensor
    reset_to_zero: bool
    slope: float
    fused: bool

    @property
    def learnable(self) -> bool:
        return self.beta.requires_grad or self.threshold.requires_grad


class SpikingNeuron(nn.Module):
    """Base class of every neuron (see the module docstring for the interface).

    Subclasses call ``super().__init__()``, set up their parameters, and implement
    ``forward`` and ``step``. The state of single-step mode is registered by name with
    :meth:`register_state`, so ``reset`` and ``state`` need no code of their own.
    ``takes_layer_size``: the constructor needs ``size`` (the layer's neurons, or channels of a
    convolution), as a neuron with recurrent weights does; models then always pass it.
    """

    takes_layer_size = False

    def __init__(self):
        super().__init__()
        self._state_names: list[str] = []

    # ------------------------------------------------------------------ state (single-step mode)

    def register_state(self, name: str) -> None:
        """Declare a single-step state tensor (None until the first step, after a reset)."""
        self._state_names.append(name)
        setattr(self, name, None)

    @property
    def state(self) -> dict[str, torch.Tensor | None]:
        return {name: getattr(self, name) for name in self._state_names}

    def reset(self) -> None:
        """Forget the single-step state."""
        for name in self._state_names:
            setattr(self, name, None)

    # ------------------------------------------------------------------ what others read

    def forward(self, current: torch.Tensor, return_membrane: bool = True,
                overwrite_current: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def step(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def lif_parameters(self) -> LifParameters | None:
        """The first-order LIF this neuron is, or None (the default: not a plain LIF)."""
        return None

    def snntorch_equivalent(self, init_hidden: bool = False, output: bool = False) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} has no snntorch counterpart")

    def recurrent_synapses(self) -> list[nn.Module]:
        return []

    # ------------------------------------------------------------------ what quantiser, exports, references read

    @property
    def reset_mechanism(self) -> str:
        """What a spike does to the membrane: "subtract" (U -= threshold) or "zero" (RESET_MECHANISMS).

        The default reads :meth:`lif_parameters`; a neuron that is not a plain LIF overrides this property
        (NotImplementedError if it does neither)."""
        parameters = self.lif_parameters()
        if parameters is None:
            raise NotImplementedError(f"{type(self).__name__} states no reset_mechanism")
        return "zero" if parameters.reset_to_zero else "subtract"

    def neuron_parameters(self) -> dict[str, torch.Tensor]:
        """The neuron's own constants by name: the tensors it computes with (its parameters or buffers, not
        copies), a scalar ``[]`` or one per channel ``[C, 1, ...]``, unclamped (ranges and clamps: the neuron's
        docstring). LIF-family neurons have "beta" and "threshold"; Synaptic adds "alpha", ALIF "rho" and
        "adaptation". Recurrent weights are :meth:`recurrent_synapses`. The default: beta and threshold of
        :meth:`lif_parameters`, or nothing for a neuron that is not a plain LIF."""
        parameters = self.lif_parameters()
        if parameters is None:
            return {}
        return {"beta": parameters.beta, "threshold": parameters.threshold}


def check_range(name: str, value, low: float | None = None, high: float | None = None,
                strictly_above: bool = False) -> None:
    """ValueError naming ``name`` unless every entry of ``value`` lies in [low, high] (or above low)."""
    values = torch.as_tensor(value, dtype=torch.float32)
    if low is not None and bool((values <= low).any() if strictly_above else (values < low).any()):
        raise ValueError(f"{name} must be {'>' if strictly_above else '>='} {low}, got {value}")
    if high is not None and bool((values > high).any()):
        raise ValueError(f"{name} must be <= {high}, got {value}")


def check_lif_arguments(reset_mechanism: str, beta, threshold) -> None:
    """The checks every LIF-family neuron makes: a known reset, beta in [0, 1], threshold > 0."""
    if reset_mechanism not in RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
    check_range("beta", beta, 0.0, 1.0)
    check_range("threshold", threshold, 0.0, strictly_above=True)


def per_channel(value: float, num_channels: int | None, channel_dims: int) -> torch.Tensor:
    """``value`` as a scalar tensor, or one copy per channel ``[C, 1, ...]`` (channel_dims trailing ones)."""
    tensor = torch.tensor(float(value))
    if num_channels is None:
        return tensor
    return tensor.repeat(num_channels).reshape(num_channels, *([1] * channel_dims))


def reset_net(model: nn.Module) -> None:
    """Reset the single-step state of every neuron in ``model`` (one call, not one per layer)."""
    for module in model.modules():
        if isinstance(module, SpikingNeuron):
            module.reset()


# --------------------------------------------------------------------------- registry

NEURONS: Registry = Registry("neuron")


def register_neuron(name: str) -> Callable[[type], type]:
    """Class decorator: make a :class:`SpikingNeuron` subclass available by ``name``."""

    def register(cls: type) -> type:
        if not issubclass(cls, SpikingNeuron):
            raise TypeError(f"neuron {name!r}: {cls.__name__} must subclass scnn.neurons.SpikingNeuron")
        NEURONS[name] = cls
        cls.neuron_name = name
        return cls

    return register


def list_neurons() -> list[str]:
    return sorted(NEURONS)


def create_neuron(name: str, **options) -> SpikingNeuron:
    """Build a registered neuron; options are its constructor's keyword arguments."""
    return NEURONS.lookup(name)(**options)
