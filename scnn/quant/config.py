"""What the quantised twin quantises and how (saved in every quantised checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

from scnn.quant.quantizers import get_weight_quantizer

LEAK_MODES = ("shift", "fixed")
WEIGHT_BITS = ACT_BITS = range(2, 9)
STATE_BITS = range(2, 17)


def _check_bits(name: str, value: int, allowed: range) -> None:
    if not isinstance(value, int) or value not in allowed:
        raise ValueError(f"{name} must be an integer from {allowed.start} to {allowed.stop - 1}, got {value!r}")



@dataclass
class QuantConfig:
    """Bit widths and fixed-point choices of a quantised model.

    weight_bits: synaptic weights (2-8, signed, narrow range). act_bits: the input features and,
    in the ReLU control CNN, every activation (2-8). state_bits: LIF membrane (2-16, signed,
    saturating). per_channel: one weight scale per output channel (else per tensor).
    leak: "shift" (beta rounded to 1 - 2**-k, k = 0..15) or "fixed" (beta rounded to a
    multiple of 2**-leak_bits). state_range: membrane range covered by the state grid, as a
    multiple of the threshold, at least; calibration widens it to the 99.9th percentile of
    the float model's |membrane| when that is larger. weight_quant: a registered weight
    quantiser (:mod:`scnn.quant.quantizers`): "fixed_point" (power-of-two scales, exported
    to integers bit-exactly) or "float_scale".
    """

    weight_bits: int = 8
    act_bits: int = 8
    state_bits: int = 8
    per_channel: bool = False
    leak: str = "shift"
    leak_bits: int = 8
    state_range: float = 2.0
    weight_quant: str = "fixed_point"

    def __post_init__(self):
        get_weight_quantizer(self.weight_quant)
        _check_bits("weight_bits", self.weight_bits, WEIGHT_BITS)
        _check_bits("act_bits", self.act_bits, ACT_BITS)
        _check_bits("state_bits", self.state_bits, STATE_BITS)
        _check_bits("leak_bits", self.leak_bits, range(1, 16))
        if self.leak not in LEAK_MODES:
            raise ValueError(f"leak must be one of {LEAK_MODES}, got {self.leak!r}")
        if self.leak == "fixed" and self.state_bits + self.leak_bits > 24:
            raise ValueError(f"leak='fixed' needs state_bits + leak_bits <= 24 (float32 holds the product exactly), "
                             f"got {self.state_bits} + {self.leak_bits}")
        if not self.state_range >= 1.0:
            raise ValueError(f"state_range must be >= 1 (a multiple of the threshold), got {self.state_range}")

