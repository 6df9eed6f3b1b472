"""The integer artefact of a quantised model, and an integer-only reference that runs it.

:func:`export_integer` turns a :class:`~scnn.quant.QuantSpecNet` into plain arrays: int8
weights, int32 biases, base-2 exponents (every scale is ``2**e``), integer thresholds and
leak shifts. :func:`save_integer` writes them as ``.npz`` plus a JSON description that a
microcontroller or FPGA port can read; :func:`load_integer` reads them back.

:func:`run_integer` is the reference inference in numpy: int8 inputs, int64 accumulators,
integer LIF with shift-based leak, no floating point after the input has been quantised.
It reproduces the fake-quantised Brevitas model exactly (tested); the arithmetic is::

    acc   = W_int . x_int + b_int                       (x_int: int8 input, 0/1 spikes, or uint ReLU codes)
    I     = round_half_even(acc * 2**(e_acc - e_u))      (an arithmetic shift with rounding)
    U[t]  = clip(leak(U[t-1]) + I[t] - S[t-1] * thr, -2**(b-1), 2**(b-1) - 1),  S[t] = U[t] > thr
    logits = sum_t U[t]  (classifier membrane, in units of 2**e_u)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scnn.io import atomic_write, write_text

FORMAT = "scnn-integer-v1"


def _exponent(scale: torch.Tensor, what: str) -> np.ndarray:
    """Base-2 exponents of a power-of-two scale tensor (ValueError if a scale is not a power of two)."""
    values = scale.detach().double().cpu().numpy().reshape(-1)
    exponents = np.round(np.log2(values))
    if not np.allclose(2.0 ** exponents, values, rtol=0, atol=0):
        raise ValueError(f"{what}: scale {values} is not a power of two; integer export needs fixed-point quantisers")
    return exponents.astype(np.int64)


# --------------------------------------------------------------------------- export


@torch.no_grad()
def export_integer(quantized) -> tuple[dict, dict[str, np.ndarray]]:
    """(description, arrays) of a quantised model in eval mode. See the module docstring."""
    from scnn.quant.quantizers import get_weight_quantizer
    from scnn.quant.twin import QuantLIF

    quantizer = get_weight_quantizer(quantized.quant_config.weight_quant)
    if not quantizer.integer_exact:
        raise ValueError(f"weight quantiser {quantizer.name!r} has no exact integer form (its scales are not powers "
                         "of two); quantise with weight_quant='fixed_point' to export integers")
    quantized.eval()
    config = quantized.config
    input_exponent = int(_exponent(quantized.input_quant.act_quant.scale(), "input quantiser")[0])
    description = {
        "format": FORMAT, "spiking": bool(config.spiking), "num_steps": int(quantized.num_steps),
        "readout": config.readout, "input_shape": list(config.input_shape),
        "input": {"exponent": input_exponent, "bits": quantized.quant_config.act_bits, "signed": True},
        "quant_config": dict(vars(quantized.quant_config)), "layers": [],
    }
    arrays: dict[str, np.ndarray] = {}
    in_exponent = input_exponent
    for index, block in enumerate(quantized.blocks):
        layer = block.synapse
        weight = layer.quant_weight()
        weight_exponent = _exponent(weight.scale, f"layer {index} weights")
        out_channels = layer.weight.shape[0]
        acc_exponent = np.broadcast_to(in_exponent + weight_exponent, (out_channels,)).astype(np.int64)
        bias_int = torch.round(layer.bias.double() / torch.from_numpy(2.0 ** acc_exponent)).to(torch.int64)
        prefix = f"layer{index}"
        arrays[f"{prefix}.weight"] = weight.int().cpu().numpy().astype(np.int8)
        arrays[f"{prefix}.bias"] = bias_int.numpy().astype(np.int32)
        arrays[f"{prefix}.acc_exponent"] = acc_exponent
        entry = {"type": "conv" if layer.weight.dim() == 4 else "fc", "flatten": bool(block.flatten),
                 "pool": int(block.pool.kernel_size) if isinstance(block.pool, nn.MaxPool2d) else 0,
                 "weight_bits": quantized.quant_config.weight_bits}
        activation = block.activation
        if isinstance(activation, QuantLIF):
            entry["activation"] = _lif_entry(activation, prefix, arrays)
            in_exponent = 0  # spikes: 0 or 1
        elif isinstance(activation, nn.Identity):
            entry["activation"] = {"type": "identity"}
        else:  # QuantReLU
            exponent = int(_exponent(activation.act_quant.scale(), f"layer {index} ReLU")[0])
            entry["activation"] = {"type": "relu", "bits": quantized.quant_config.act_bits, "exponent": exponent}
            in_exponent = exponent
        description["layers"].append(entry)
    return description, arrays


def _lif_entry(lif, prefix: str, arrays: dict) -> dict:
    low, high = lif.state_limits
    arrays[f"{prefix}.threshold"] = lif.threshold_int.cpu().numpy().astype(np.int64).reshape(-1)
    arrays[f"{prefix}.leak_shift"] = lif.leak_shift.cpu().numpy().astype(np.int64).reshape(-1)
    arrays[f"{prefix}.leak_multiplier"] = lif.leak_multiplier.cpu().numpy().astype(np.int64).reshape(-1)
    return {"type": "lif", "bits": lif.bits, "state_exponent": int(lif.state_exponent), "state_min": low,
            "state_max": high, "leak": lif.leak_mode, "leak_bits": lif.leak_bits,
            "reset": "zero" if lif.reset_to_zero else "subtract"}


def save_integer(description: dict, arrays: dict[str, np.ndarray], path_stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` and ``<stem>.json`` atomically; returns both paths."""
    stem = Path(path_stem)
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    atomic_write(npz_path, lambda handle: np.savez(handle, **arrays))
    sizes = {name: {"dtype": str(array.dtype), "shape": list(array.shape)} for name, array in arrays.items()}
    write_text(json_path, json.dumps({**description, "arrays": sizes}, indent=1) + "\n")
    return npz_path, json_path


def load_integer(path_stem: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read what :func:`save_integer` wrote (no pickles: ``allow_pickle=False``)."""
    stem = Path(path_stem)
    description = json.loads(stem.with_suffix(".json").read_text())
    if description.get("format") != FORMAT:
        raise ValueError(f"{stem.with_suffix('.json')}: not an scnn integer model (format {description.get('format')!r})")
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return description, arrays


# --------------------------------------------------------------------------- integer arithmetic


def shift_round(values: np.ndarray, shift: np.ndarray | int, channel_axis: int = 1) -> np.ndarray:
    """``round_half_even(values * 2**-shift)`` in integers; shift per channel (along channel_axis) or scalar.

    shift > 0: arithmetic right shift with round-half-to-even (torch.round's rule);
    shift <= 0: exact left shift.
    """
    values = values.astype(np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.ndim == 1:
        shape = [1] * values.ndim
        shape[channel_axis] = -1
        shift = shift.reshape(shape)
    right = np.maximum(shift, 0)
    floor = values >> right
    remainder = values - (floor << right)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), np.int64(0))
    round_up = (right > 0) & ((remainder > half) | ((remainder == half) & ((floor & 1) == 1)))
    rounded = floor + round_up
    return np.where(shift > 0, rounded, values << np.maximum(-shift, 0))


def conv2d_int(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Valid, stride-1 convolution in int64: x ``[N, C, H, W]``, weight ``[O, C, k, k]`` -> ``[N, O, H-k+1, W-k+1]``."""
    kernel = weight.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.int64), (kernel, kernel), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, weight.astype(np.int64), optimize=True)


def max_pool_int(x: np.ndarray, kernel: int) -> np.ndarray:
    """Max pooling, stride = kernel, floor (as nn.MaxPool2d): ``[N, C, H, W]`` -> ``[N, C, H//k, W//k]``."""
    n, c, h, w = x.shape
    h, w = h // kernel * kernel, w // kernel * kernel
    return x[:, :, :h, :w].reshape(n, c, h // kernel, kernel, w // kernel, kernel).max(axis=(3, 5))


def quantize_input(description: dict, x: np.ndarray) -> np.ndarray:
    """The only float step: features ``[B, C, H, W]`` to int8 codes, as the Brevitas input quantiser does."""
    bits = description["input"]["bits"]
    scaled = np.asarray(x, dtype=np.float32) * np.float32(2.0 ** -description["input"]["exponent"])
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return np.clip(np.round(scaled), low, high).astype(np.int8)


@dataclass
class IntegerOutput:
    """logits ``[B, classes]`` int64 in units of ``2**logit_exponent`` (classifier membrane summed
    over steps, spike counts, or accumulators); spike_counts: per LIF layer, spikes per sample
    ``[B]`` (empty for ReLU models)."""

    logits: np.ndarray
    logit_exponent: int = 0
    spike_counts: list[np.ndarray] = field(default_factory=list)

    @property
    def real_logits(self) -> np.ndarray:
        """The logits in real units (float64, exact), comparable with the Brevitas model's."""
        return self.logits.astype(np.float64) * 2.0 ** self.logit_exponent

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1)


def _synapse(entry: dict, arrays: dict, prefix: str, x: np.ndarray) -> np.ndarray:
    """Accumulators of one layer (int64), pooled: x ``[N, ...]`` integer codes."""
    weight, bias = arrays[f"{prefix}.weight"], arrays[f"{prefix}.bias"].astype(np.int64)
    if entry["type"] == "conv":
        acc = conv2d_int(x, weight) + bias[None, :, None, None]
    else:
        if entry["flatten"]:
            x = x.reshape(len(x), -1)
        acc = x.astype(np.int64) @ weight.astype(np.int64).T + bias[None, :]
    if entry["pool"]:
        acc = max_pool_int(acc, entry["pool"])
    return acc


def _lif(entry: dict, arrays: dict, prefix: str, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer LIF over ``[T, B, ...]`` currents (state units); returns spikes (int8) and membranes (int64)."""
    channel_shape = (1, -1) + (1,) * (current.ndim - 3)  # broadcast per-channel values over [B, C, ...]

    def per_channel(name: str) -> np.ndarray:
        values = arrays[f"{prefix}.{name}"]
        return values.reshape(channel_shape) if values.size > 1 else values.reshape(())

    threshold, shift, multiplier = per_channel("threshold"), per_channel("leak_shift"), per_channel("leak_multiplier")
    zero_reset = entry["reset"] == "zero"
    membrane = np.zeros(current.shape[1:], dtype=np.int64)
    spike = np.zeros(current.shape[1:], dtype=np.int64)
    spikes, membranes = [], []
    for current_t in current:
        kept = membrane * (1 - spike) if zero_reset else membrane
        if entry["leak"] == "shift":
            leaked = kept - (kept >> shift)
        else:
            leaked = (kept * multiplier) >> entry["leak_bits"]
        membrane = leaked + current_t
        if not zero_reset:
            membrane = membrane - spike * threshold
        membrane = np.clip(membrane, entry["state_min"], entry["state_max"])
        spike = (membrane > threshold).astype(np.int64)
        spikes.append(spike.astype(np.int8))
        membranes.append(membrane)
    return np.stack(spikes), np.stack(membranes)


def run_integer(description: dict, arrays: dict[str, np.ndarray], x_int: np.ndarray) -> IntegerOutput:
    """Integer-only inference: x_int ``[B, C, H, W]`` int8 codes (see :func:`quantize_input`)."""
    if description.get("format") != FORMAT:
        raise ValueError(f"not an scnn integer model: format {description.get('format')!r}")
    x = np.asarray(x_int)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"run_integer takes integer input codes, got dtype {x.dtype}; use quantize_input first")
    steps, batch = description["num_steps"], len(x)
    spike_counts = []
    for index, entry in enumerate(description["layers"]):
        prefix = f"layer{index}"
        activation = entry["activation"]
        if description["spiking"] and index > 0:  # spikes [T, B, ...]: time folded into the batch
            acc = _synapse(entry, arrays, prefix, x.reshape(steps * batch, *x.shape[2:]))
            acc = acc.reshape(steps, batch, *acc.shape[1:])
        else:
            acc = _synapse(entry, arrays, prefix, x)
        acc_exponent = arrays[f"{prefix}.acc_exponent"]
        channel_axis = acc.ndim - (3 if entry["type"] == "conv" else 1)
        if activation["type"] == "lif":
            current = shift_round(acc, activation["state_exponent"] - acc_exponent, channel_axis=channel_axis)
            if index == 0:  # static input: the same current at every step
                current = np.broadcast_to(current, (steps, *current.shape))
            x, membranes = _lif(activation, arrays, prefix, current)
            spike_counts.append(x.reshape(steps, batch, -1).sum(axis=(0, 2)))
        elif activation["type"] == "relu":
            codes = shift_round(np.maximum(acc, 0), activation["exponent"] - acc_exponent, channel_axis=channel_axis)
            x = np.clip(codes, 0, 2 ** activation["bits"] - 1)
        else:  # identity classifier: bring per-channel accumulators to one exponent
            return IntegerOutput(logits=acc << (acc_exponent - acc_exponent.min())[None, :],
                                 logit_exponent=int(acc_exponent.min()))
    if description["readout"] == "membrane":
        return IntegerOutput(membranes.sum(0), activation["state_exponent"], spike_counts)
    return IntegerOutput(x.astype(np.int64).sum(0), 0, spike_counts)
