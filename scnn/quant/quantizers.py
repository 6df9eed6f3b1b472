"""Weight quantisers by name: the Brevitas quantiser class a quantised twin's synapses use.

Brevitas chooses quantisation by passing quantiser classes (``weight_quant=...``), not by
subclassing layers; this registry names them so a config can choose one
(``QuantConfig(weight_quant="float_scale")``). A new quantiser is one registered factory::

    @register_weight_quantizer("my_quantizer", integer_exact=False)
    def my_quantizer(per_channel: bool): return SomeBrevitasQuantizer

``integer_exact``: its scales are powers of two, so the integer reference
(:mod:`scnn.quant.integer`) reproduces the quantised model bit for bit and can be exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from scnn.registry import Registry


@dataclass(frozen=True)
class WeightQuantizer:
    name: str
    factory: Callable[[bool], type]  # per_channel -> Brevitas weight quantiser class
    integer_exact: bool


WEIGHT_QUANTIZERS: Registry = Registry("weight quantiser")


def register_weight_quantizer(name: str, integer_exact: bool) -> Callable:
    def register(factory: Callable[[bool], type]) -> Callable:
        WEIGHT_QUANTIZERS[name] = WeightQuantizer(name, factory, integer_exact)
        return factory

    return register


def get_weight_quantizer(name: str) -> WeightQuantizer:
    return WEIGHT_QUANTIZERS.lookup(name)


@register_weight_quantizer("fixed_point", integer_exact=True)
def fixed_point(per_channel: bool) -> type:
    """Signed narrow-range integers with a power-of-two scale (per tensor, or per output channel)."""
    from brevitas.quant import Int8WeightPerTensorFixedPoint

    return Int8WeightPerTensorFixedPoint.let(scaling_per_output_channel=True) if per_channel \
        else Int8WeightPerTensorFixedPoint


@register_weight_quantizer("float_scale", integer_exact=False)
def float_scale(per_channel: bool) -> type:
    """Signed narrow-range integers with any real scale (max |w| / (2^(b-1) - 1)): finer steps, but the
    model is fake-quantised only; the integer reference needs power-of-two scales."""
    from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat

    return Int8WeightPerChannelFloat if per_channel else Int8WeightPerTensorFloat
