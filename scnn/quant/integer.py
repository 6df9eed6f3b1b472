"""The integer artefact of a quantised model, and an integer-only reference that runs it.

:func:`export_integer` turns a :class:`~scnn.quant.QuantSpecNet` into plain arrays: int8
weights, int32 biases, base-2 exponents (every scale is ``2**e``), integer thresholds and
leak shifts. :func:`save_integer` writes them as ``.npz`` plus a JSON description that a
microcontroller or FPGA port can read; :func:`load_integer` reads them back. The format is
specified in ``docs/integer_format.md``: the JSON names the arithmetic (rounding, LIF update
order, leak formula, flatten order, convolution geometry), the integer widths every stage needs
(:func:`integer_widths`), the feature front end and the normaliser (``input.norm_mean`` /
``input.norm_std``), and ``<stem>.vectors.npz`` holds test vectors (:func:`make_test_vectors`)
that any port is checked against (:func:`check_test_vectors`).

:func:`run_integer` is the reference inference in numpy: int8 inputs, int64 accumulators,
integer LIF with shift-based leak, no floating point after the input has been quantised.
It reproduces the fake-quantised Brevitas model exactly (tested); the arithmetic is::

    acc   = W_int . x_int + b_int                       (x_int: int8 input, 0/1 spikes, or uint ReLU codes)
    I     = round_half_even(acc * 2**(e_acc - e_u))      (an arithmetic shift with rounding)
    U[t]  = clip(leak(U[t-1]) + I[t] - S[t-1] * thr, -2**(b-1), 2**(b-1) - 1),  S[t] = U[t] > thr
    logits = sum_t U[t]  (classifier membrane, in units of 2**e_u)

The recurrent ("rlif"), second-order ("synaptic") and adaptive ("alif") neurons add their states
to this update (:class:`_Neuron`, ``ARITHMETIC["neurons"]``). A sequence-input artefact (the
streaming presets) feeds frame t of the codes at step t; :class:`IntegerStreamer` runs any
spiking artefact one step at a time with its state kept, equal to :func:`run_integer` (tested).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scnn.io import atomic_write, write_text

FORMAT = "scnn-integer-v3"
# v1 (before the spec) has the same arrays and arithmetic, without front end, normaliser, widths and vectors;
# v2 has them, with Leaky ("lif") neurons and static input only. v3 adds the neurons "rlif", "synaptic" and
# "alif", sequence input (frame by frame: ``input_kind``) and padded, rectangular convolutions. A v1 or v2
# artefact is a valid v3 one (every new field has the v2 meaning when absent), so all three load and run.
READABLE_FORMATS = ("scnn-integer-v1", "scnn-integer-v2", FORMAT)
NEURON_TYPES = ("lif", "rlif", "synaptic", "alif")

# The arithmetic every port must reproduce, written into each artefact (docs/integer_format.md explains each).
ARITHMETIC = {
    "requantisation": "I = round_half_even(acc * 2**(acc_exponent - state_exponent)): an arithmetic right shift by "
                      "s = state_exponent - acc_exponent (per output channel) rounding ties to the even result; "
                      "s <= 0 is an exact left shift. Half-up rounding is NOT equivalent.",
    "lif_update": "kept = U[t-1] (subtract reset) or U[t-1] * (1 - S[t-1]) (zero reset); U = leak(kept) + I[t]; "
                  "subtract reset: U -= S[t-1] * threshold (after the leak: the reset is not leaked); "
                  "U[t] = clip(U, state_min, state_max) once, after the whole sum; S[t] = U[t] > threshold (strict).",
    "leak": {"shift": "leak(U) = U - floor(U / 2**leak_shift) = U - (U >> k) with an arithmetic (flooring) shift; "
                      "on negative U, floor(U / 2**k) rounds toward -infinity (e.g. k=1, U=-3: -3 - (-2) = -1)",
             "fixed": "leak(U) = floor(U * leak_multiplier / 2**leak_bits), flooring toward -infinity "
                      "(e.g. multiplier 128, leak_bits 8, U=-3: floor(-1.5) = -2)"},
    "initial_state": "U[-1] = 0, S[-1] = 0 for every neuron at the start of each sample",
    "flatten_order": "C,H,W (row-major [C, H, W], as torch.flatten of NCHW); channels-last is NOT equivalent",
    "convolution": {"padding": "0 (valid) when the layer says 0 or nothing; [ph, pw]: ph zero rows above and below, "
                               "pw zero columns left and right of the input codes/spikes",
                    "stride": 1, "dilation": 1, "groups": 1,
                    "kernel": "k: square, weight [O, C, k, k]; [kh, kw]: weight [O, C, kh, kw]",
                    "output": "H + 2 ph - kh + 1, W + 2 pw - kw + 1"},
    "neurons": {
        "lif": "see lif_update",
        "rlif": "R = round_half_even(acc_rec * 2**(rec_exponent - state_exponent)) with acc_rec = W_rec . S[t-1] + "
                "b_rec (fc/conv) or S[t-1] * V (one_to_one); sum = leak(U[t-1]) + I[t] + R; subtract reset: "
                "U[t] = clip(sum - S[t-1] * threshold); zero reset: U[t] = 0 if S[t-1] else clip(sum)",
        "synaptic": "Syn[t] = clip(leak_alpha(Syn[t-1]) + I[t]); sum = leak(U[t-1]) + Syn[t]; subtract reset: "
                    "U[t] = clip(sum - S[t-1] * threshold); zero reset: U[t] = 0 if S[t-1] else clip(sum) (Syn kept)",
        "alif": "Theta[t] = clip(leak_rho(Theta[t-1]) + S[t-1] * jump, 0, state_max); B[t] = threshold + Theta[t]; "
                "subtract reset: U[t] = clip(leak(U[t-1]) + I[t] - S[t-1] * B[t]); zero reset: "
                "U[t] = clip(leak(U[t-1] * (1 - S[t-1])) + I[t]); S[t] = U[t] > B[t] (strict)",
        "leaks": "leak_alpha, leak_rho: the layer's leak formula with alpha_shift/alpha_multiplier, "
                 "rho_shift/rho_multiplier in place of leak_shift/leak_multiplier",
    },
    "sequence_input": "input_kind 'sequence' (encoding 'frames'): codes [B, 1, F, W]; step t feeds frame t, the "
                      "column codes[:, :, :, t] as [B, 1, F, 1], to the first layer; num_steps = W",
    "pooling": "max pooling of the accumulators (bias added, before requantisation), kernel = stride = pool, "
               "floor (trailing rows/columns dropped)",
    "first_layer": "static input: the accumulator and current are computed once and fed at every step; sequence "
                   "input: computed from frame t at step t",
    "hidden_input": "layers after the first take the previous layer's spikes (0/1) of the same step",
    "readout": "membrane: logits = sum over steps of the last layer's saturated membrane U[t] (units 2**state_exponent);"
               " spike_count: logits = sum of its spikes; prediction = first index of the largest logit",
    "input_quantiser": "codes = clip(round_half_even(float32(x) * float32(2**-input.exponent)), -2**(bits-1), "
                       "2**(bits-1) - 1) on normalised features x; the only floating-point step",
}


def _exponent(scale: torch.Tensor, what: str) -> np.ndarray:
    """Base-2 exponents of a power-of-two scale tensor (ValueError if a scale is not a power of two)."""
    values = scale.detach().double().cpu().numpy().reshape(-1)
    exponents = np.round(np.log2(values))
    if not np.allclose(2.0 ** exponents, values, rtol=0, atol=0):
        raise ValueError(f"{what}: scale {values} is not a power of two; integer export needs fixed-point quantisers")
    return exponents.astype(np.int64)


# --------------------------------------------------------------------------- export


@torch.no_grad()
def export_integer(quantized, feature_config=None, normalizer=None) -> tuple[dict, dict[str, np.ndarray]]:
    """(description, arrays) of a quantised model in eval mode. See the module docstring.

    feature_config (:class:`scnn.features.mfcc.FeatureConfig`) and normalizer
    (:class:`scnn.features.normalize.Normalizer`): the front end that made the model's input;
    stored so that a port can go from audio to codes (without them the artefact says ``null``).
    """
    from scnn.quant.quantizers import get_weight_quantizer
    from scnn.quant.twin import QuantLIF, QuantSpecNet

    if not isinstance(quantized, QuantSpecNet):
        raise ValueError(f"export_integer takes a quantised model (scnn.quant.quantize), got {type(quantized).__name__}")

    quantizer = get_weight_quantizer(quantized.quant_config.weight_quant)
    if not quantizer.integer_exact:
        raise ValueError(f"weight quantiser {quantizer.name!r} has no exact integer form (its scales are not powers "
                         "of two); quantise with weight_quant='fixed_point' to export integers")
    quantized.eval()
    config = quantized.config
    input_exponent = int(_exponent(quantized.input_quant.act_quant.scale(), "input quantiser")[0])
    description = {
        "format": FORMAT, "spiking": bool(config.spiking), "num_steps": int(quantized.num_steps),
        "readout": config.readout, "input_shape": list(config.input_shape), "family": quantized.family,
        "input_kind": "sequence" if quantized.sequence else "static",
        "encoding": "frames" if quantized.sequence else "direct",
        "input": {"exponent": input_exponent, "bits": quantized.quant_config.act_bits, "signed": True},
        "quant_config": dict(vars(quantized.quant_config)), "arithmetic": ARITHMETIC, "layers": [],
        "front_end": None, "normalizer": None,
    }
    arrays: dict[str, np.ndarray] = {}
    if feature_config is not None:
        from dataclasses import asdict

        description["front_end"] = {"type": "scnn.features.mfcc.FeatureConfig", **asdict(feature_config)}
    if normalizer is not None:
        arrays["input.norm_mean"] = np.asarray(normalizer.mean, np.float32)
        arrays["input.norm_std"] = np.asarray(normalizer.std, np.float32)
        description["normalizer"] = {
            "enabled": bool(normalizer.enabled), "mean": "input.norm_mean", "std": "input.norm_std",
            "formula": "x[c, row, frame] = float32((features[row, frame] - mean[row]) / std[row]) when enabled"}
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
                 **(_conv_geometry(layer) if layer.weight.dim() == 4 else {}),
                 "pool": int(block.pool.kernel_size) if isinstance(block.pool, nn.MaxPool2d) else 0,
                 "weight_bits": quantized.quant_config.weight_bits}
        activation = block.activation
        if isinstance(activation, QuantLIF):
            entry["activation"] = _neuron_entry(activation, prefix, arrays, in_exponent=0)
            in_exponent = 0  # spikes: 0 or 1
        elif isinstance(activation, nn.Identity):
            entry["activation"] = {"type": "identity"}
        else:  # QuantReLU
            exponent = int(_exponent(activation.act_quant.scale(), f"layer {index} ReLU")[0])
            entry["activation"] = {"type": "relu", "bits": quantized.quant_config.act_bits, "exponent": exponent}
            in_exponent = exponent
        description["layers"].append(entry)
    description["widths"] = integer_widths(description, arrays)
    return description, arrays


def _signed_bits(bound: int) -> int:
    """Bits of the smallest two's-complement integer type range that holds [-bound, bound]."""
    return int(bound).bit_length() + 1


def integer_widths(description: dict, arrays: dict[str, np.ndarray]) -> list[dict]:
    """Worst-case magnitudes (over every possible input) of each stage, per layer, and the signed bits they need.

    acc: ``sum |W| * max|x| + |b|`` per output channel (x: input codes for the first layer, 0/1
    spikes or ReLU codes after); current: acc after requantisation; membrane_sum: the neuron's sum before
    saturation (``max|leak(U)| + |I| + threshold``, plus the recurrent current of an "rlif", the adapted
    threshold of an "alif"; an "synaptic" adds the saturated Syn instead of I); synaptic_sum, adaptation_sum,
    rec_acc, rec_current: the same for the extra states and the recurrent synapse; logits: what the readout
    sums over the steps.
    """
    widths = []
    bits = description["input"]["bits"]
    in_max = 2 ** (bits - 1)  # |code| <= 2**(bits-1)
    for index, entry in enumerate(description["layers"]):
        prefix = f"layer{index}"
        acc = _acc_bound(arrays, prefix, in_max)
        row = {"layer": index, "input_max": int(in_max), "acc_max": int(acc.max()), "acc_bits": _signed_bits(acc.max())}
        activation = entry["activation"]
        if activation["type"] in NEURON_TYPES:
            state = max(-activation["state_min"], activation["state_max"])
            current = _current_bound(acc, activation["state_exponent"] - arrays[f"{prefix}.acc_exponent"])
            threshold = int(arrays[f"{prefix}.threshold"].max())
            row.update(current_max=current, current_bits=_signed_bits(current))
            membrane_sum = state + current + threshold
            kind = activation["type"]
            if kind == "rlif":
                rec_prefix = f"{prefix}.recurrent"
                if activation["recurrent"]["type"] == "one_to_one":
                    rec_acc = np.abs(arrays[f"{rec_prefix}.v"].astype(np.int64))
                else:
                    rec_acc = _acc_bound(arrays, rec_prefix, 1)
                rec_current = _current_bound(rec_acc, activation["state_exponent"]
                                             - arrays[f"{rec_prefix}.acc_exponent"])
                row.update(rec_acc_max=int(rec_acc.max()), rec_acc_bits=_signed_bits(rec_acc.max()),
                           rec_current_max=rec_current, rec_current_bits=_signed_bits(rec_current))
                membrane_sum += rec_current
            elif kind == "synaptic":
                row.update(synaptic_sum_max=state + current, synaptic_sum_bits=_signed_bits(state + current))
                membrane_sum = 2 * state + threshold  # leak(U) + saturated Syn + the reset
            elif kind == "alif":
                jump = int(arrays[f"{prefix}.jump"].max())
                row.update(adaptation_sum_max=state + jump, adaptation_sum_bits=_signed_bits(state + jump))
                membrane_sum += state  # the reset subtracts threshold + Theta, Theta <= state_max
            row.update(membrane_sum_max=int(membrane_sum), membrane_sum_bits=_signed_bits(membrane_sum),
                       state_bits=activation["bits"])
            if index == len(description["layers"]) - 1:
                logits = description["num_steps"] * (state if description["readout"] == "membrane" else 1)
                row.update(logits_max=int(logits), logits_bits=_signed_bits(logits))
            in_max = 1
        elif activation["type"] == "relu":
            in_max = 2 ** activation["bits"] - 1
        widths.append(row)
    return widths


def _acc_bound(arrays: dict, prefix: str, in_max: int) -> np.ndarray:
    """Per output channel: sum |W| * in_max + |b| (int64)."""
    weight = arrays[f"{prefix}.weight"].astype(np.int64)
    weight = np.abs(weight).reshape(len(weight), -1)
    return weight.sum(1) * in_max + np.abs(arrays[f"{prefix}.bias"].astype(np.int64))


def _current_bound(acc: np.ndarray, shift: np.ndarray) -> int:
    """The largest |requantised accumulator| (rounding is monotonic: the bound requantised is exact)."""
    return int(shift_round(acc, np.broadcast_to(shift, acc.shape), channel_axis=0).max())


def _conv_geometry(layer) -> dict:
    """A square unpadded convolution as v2 wrote it (kernel k, padding 0); else [kh, kw] and [ph, pw]."""
    kernel, padding = tuple(layer.kernel_size), tuple(layer.padding)
    if kernel[0] == kernel[1] and padding == (0, 0):
        return {"padding": 0, "stride": 1, "kernel": int(kernel[0])}
    return {"padding": [int(v) for v in padding], "stride": 1, "kernel": [int(v) for v in kernel]}


def _int_array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.int64).reshape(-1)


def _neuron_entry(neuron, prefix: str, arrays: dict, in_exponent: int = 0) -> dict:
    """The activation entry of a quantised neuron (its ``kind``), its arrays written into ``arrays``."""
    low, high = neuron.state_limits
    arrays[f"{prefix}.threshold"] = _int_array(neuron.threshold_int)
    arrays[f"{prefix}.leak_shift"] = _int_array(neuron.leak_shift)
    arrays[f"{prefix}.leak_multiplier"] = _int_array(neuron.leak_multiplier)
    entry = {"type": neuron.kind, "bits": neuron.bits, "state_exponent": int(neuron.state_exponent),
             "state_min": low, "state_max": high, "leak": neuron.leak_mode, "leak_bits": neuron.leak_bits,
             "reset": "zero" if neuron.reset_to_zero else "subtract"}
    if neuron.kind == "synaptic":
        arrays[f"{prefix}.alpha_shift"] = _int_array(neuron.alpha_shift)
        arrays[f"{prefix}.alpha_multiplier"] = _int_array(neuron.alpha_multiplier)
    elif neuron.kind == "alif":
        arrays[f"{prefix}.rho_shift"] = _int_array(neuron.rho_shift)
        arrays[f"{prefix}.rho_multiplier"] = _int_array(neuron.rho_multiplier)
        arrays[f"{prefix}.jump"] = _int_array(neuron.jump_int)
    elif neuron.kind == "rlif":
        entry["recurrent"] = _recurrent_entry(neuron, f"{prefix}.recurrent", arrays, in_exponent)
    return entry


def _recurrent_entry(neuron, prefix: str, arrays: dict, in_exponent: int) -> dict:
    """The recurrent synapse of an "rlif" layer: fc / conv (int8 weights, int32 bias, acc exponents) or one_to_one."""
    if not neuron.all_to_all:
        integer, exponent = neuron.quant_v()
        arrays[f"{prefix}.v"] = integer.detach().cpu().numpy().astype(np.int8).reshape(-1)
        arrays[f"{prefix}.acc_exponent"] = np.array([int(exponent)], np.int64)
        return {"type": "one_to_one", "weight_bits": neuron.weight_bits}
    layer = neuron.recurrent
    weight = layer.quant_weight()
    out_channels = layer.weight.shape[0]
    acc_exponent = np.broadcast_to(in_exponent + _exponent(weight.scale, f"{prefix} weights"),
                                   (out_channels,)).astype(np.int64)
    arrays[f"{prefix}.weight"] = weight.int().cpu().numpy().astype(np.int8)
    bias = layer.bias if layer.bias is not None else torch.zeros(out_channels)
    arrays[f"{prefix}.bias"] = torch.round(bias.detach().double().cpu() / torch.from_numpy(2.0 ** acc_exponent)
                                           ).to(torch.int64).numpy().astype(np.int32)
    arrays[f"{prefix}.acc_exponent"] = acc_exponent
    if layer.weight.dim() == 4:
        return {"type": "conv", **_conv_geometry(layer), "weight_bits": neuron.weight_bits}
    return {"type": "fc", "weight_bits": neuron.weight_bits}


def save_integer(description: dict, arrays: dict[str, np.ndarray], path_stem: str | Path,
                 vectors: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` and ``<stem>.json`` atomically (and ``<stem>.vectors.npz`` with test
    vectors from :func:`make_test_vectors`, if given); returns the first two paths."""
    stem = Path(path_stem)
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    atomic_write(npz_path, lambda handle: np.savez(handle, **arrays))
    if vectors is not None:
        atomic_write(vectors_path(stem), lambda handle: np.savez(handle, **vectors))
        description = {**description, "test_vectors": {"file": vectors_path(stem).name,
                                                       "samples": int(len(vectors["input_codes"]))}}
    sizes = {name: {"dtype": str(array.dtype), "shape": list(array.shape)} for name, array in arrays.items()}
    write_text(json_path, json.dumps({**description, "arrays": sizes}, indent=1) + "\n")
    return npz_path, json_path


def load_integer(path_stem: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read what :func:`save_integer` wrote (no pickles: ``allow_pickle=False``)."""
    stem = Path(path_stem)
    description = json.loads(stem.with_suffix(".json").read_text())
    if description.get("format") not in READABLE_FORMATS:
        raise ValueError(f"{stem.with_suffix('.json')}: not an scnn integer model (format {description.get('format')!r})")
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return description, arrays


def vectors_path(path_stem: str | Path) -> Path:
    """``<stem>.vectors.npz``: where :func:`save_integer` writes the test vectors."""
    stem = Path(path_stem)
    return stem.with_name(stem.with_suffix("").name + ".vectors.npz")


def load_test_vectors(path_stem: str | Path) -> dict[str, np.ndarray]:
    """The test vectors saved beside an artefact (FileNotFoundError naming the file if there are none)."""
    path = vectors_path(path_stem)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no test vectors beside the integer artefact (re-export it with scnn quantize)")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


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


def conv2d_int(x: np.ndarray, weight: np.ndarray, padding=0) -> np.ndarray:
    """Stride-1 convolution in int64: x ``[N, C, H, W]``, weight ``[O, C, kh, kw]``, zero ``padding`` (0, or
    [ph, pw]) -> ``[N, O, H + 2ph - kh + 1, W + 2pw - kw + 1]``."""
    x = x.astype(np.int64)
    if padding:
        ph, pw = padding
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(x, tuple(weight.shape[-2:]), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, weight.astype(np.int64), optimize=True)


def max_pool_int(x: np.ndarray, kernel: int) -> np.ndarray:
    """Max pooling, stride = kernel, floor (as nn.MaxPool2d): ``[N, C, H, W]`` -> ``[N, C, H//k, W//k]``."""
    n, c, h, w = x.shape
    h, w = h // kernel * kernel, w // kernel * kernel
    return x[:, :, :h, :w].reshape(n, c, h // kernel, kernel, w // kernel, kernel).max(axis=(3, 5))


def normalize_features(description: dict, arrays: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Front-end features ``[B, rows, frames]`` (or ``[B, 1, rows, frames]``) to the model's float32 input
    ``[B, 1, rows, frames]`` with the artefact's normaliser (ValueError if the artefact has none)."""
    normalizer = description.get("normalizer")
    if normalizer is None:
        raise ValueError("this integer artefact has no normaliser (exported without the data's front end)")
    x = np.asarray(features, np.float32)
    x = x[:, None] if x.ndim == 3 else x
    if normalizer["enabled"]:
        mean, std = arrays[normalizer["mean"]], arrays[normalizer["std"]]
        x = ((x - mean[:, None]) / std[:, None]).astype(np.float32)
    return x


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
    membranes: list[np.ndarray] = field(default_factory=list)  # per LIF layer [T, B, ...] (record_membranes=True)

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
        acc = conv2d_int(x, weight, entry.get("padding", 0)) + bias[None, :, None, None]
    else:
        if entry.get("flatten", False):
            x = x.reshape(len(x), -1)
        acc = x.astype(np.int64) @ weight.astype(np.int64).T + bias[None, :]
    if entry.get("pool", 0):
        acc = max_pool_int(acc, entry["pool"])
    return acc


def _channel_axis(acc: np.ndarray, entry: dict) -> int:
    return acc.ndim - (3 if entry["type"] == "conv" else 1)


class _Neuron:
    """One integer neuron layer (docs/integer_format.md, "Neurons"): its constants and :meth:`step`.

    The offline pass (:func:`run_integer`) and the streaming one (:class:`IntegerStreamer`) both
    advance it with :meth:`step`, so they share every rule; they differ in the order of the loops.
    """

    def __init__(self, entry: dict, arrays: dict, prefix: str):
        self.entry, self.kind = entry, entry["type"]
        self.arrays, self.prefix = arrays, prefix
        self.low, self.high = entry["state_min"], entry["state_max"]
        self.zero_reset = entry["reset"] == "zero"

    def per_channel(self, name: str, ndim: int) -> np.ndarray:
        """``prefix.name`` broadcast over a step's ``[B, C, ...]`` (ndim dimensions), one value or per channel."""
        values = self.arrays[f"{self.prefix}.{name}"].astype(np.int64)
        return values.reshape((1, -1) + (1,) * (ndim - 2)) if values.size > 1 else values.reshape(())

    def leak(self, values: np.ndarray, shift_name: str, multiplier_name: str) -> np.ndarray:
        """U - (U >> k) ("shift") or (U * m) >> leak_bits ("fixed"), flooring shifts."""
        if self.entry["leak"] == "shift":
            return values - (values >> self.per_channel(shift_name, values.ndim))
        return (values * self.per_channel(multiplier_name, values.ndim)) >> self.entry["leak_bits"]

    def initial_state(self, shape: tuple) -> dict[str, np.ndarray]:
        state = {"membrane": np.zeros(shape, np.int64), "spike": np.zeros(shape, np.int64)}
        if self.kind == "synaptic":
            state["synaptic"] = np.zeros(shape, np.int64)
        elif self.kind == "alif":
            state["adaptation"] = np.zeros(shape, np.int64)
        return state

    def recurrent_current(self, spike: np.ndarray) -> np.ndarray:
        """R[t] of an "rlif" layer from S[t-1] ``[B, ...]`` (state units)."""
        recurrent = self.entry["recurrent"]
        prefix = f"{self.prefix}.recurrent"
        shift = self.entry["state_exponent"] - self.arrays[f"{prefix}.acc_exponent"]
        if recurrent["type"] == "one_to_one":
            v = self.arrays[f"{prefix}.v"].astype(np.int64)
            v = v.reshape((1, -1) + (1,) * (spike.ndim - 2)) if v.size > 1 else v.reshape(())
            return spike * shift_round(v, int(shift[0]), channel_axis=0)
        acc = _synapse(recurrent, self.arrays, prefix, spike)
        return shift_round(acc, shift, channel_axis=_channel_axis(acc, recurrent))

    def step(self, current: np.ndarray, state: dict) -> dict:
        """I[t] ``[B, ...]`` (state units, int64) and the state at t-1 -> the state at t."""
        previous, membrane = state["spike"], state["membrane"]
        threshold = self.per_channel("threshold", current.ndim)
        new = {}
        if self.kind == "lif":
            kept = membrane * (1 - previous) if self.zero_reset else membrane
            total = self.leak(kept, "leak_shift", "leak_multiplier") + current
            if not self.zero_reset:
                total = total - previous * threshold
            membrane = np.clip(total, self.low, self.high)
        elif self.kind in ("rlif", "synaptic"):
            if self.kind == "rlif":
                drive = current + self.recurrent_current(previous)
            else:
                new["synaptic"] = drive = np.clip(
                    self.leak(state["synaptic"], "alpha_shift", "alpha_multiplier") + current, self.low, self.high)
            total = self.leak(membrane, "leak_shift", "leak_multiplier") + drive
            if self.zero_reset:
                membrane = np.where(previous == 1, 0, np.clip(total, self.low, self.high))
            else:
                membrane = np.clip(total - previous * threshold, self.low, self.high)
        else:  # alif
            theta = self.leak(state["adaptation"], "rho_shift", "rho_multiplier") + previous * self.per_channel(
                "jump", current.ndim)
            new["adaptation"] = theta = np.clip(theta, 0, self.high)
            threshold = threshold + theta
            if self.zero_reset:
                total = self.leak(membrane * (1 - previous), "leak_shift", "leak_multiplier") + current
            else:
                total = self.leak(membrane, "leak_shift", "leak_multiplier") + current - previous * threshold
            membrane = np.clip(total, self.low, self.high)
        new.update(membrane=membrane, spike=(membrane > threshold).astype(np.int64))
        return new

    def run(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Over ``[T, B, ...]`` currents from the zero state: spikes (int8) and saturated membranes (int64)."""
        state = self.initial_state(current.shape[1:])
        spikes, membranes = [], []
        for current_t in current:
            state = self.step(current_t, state)
            spikes.append(state["spike"].astype(np.int8))
            membranes.append(state["membrane"])
        return np.stack(spikes), np.stack(membranes)


def _check_runnable(description: dict, x: np.ndarray, what: str) -> None:
    if description.get("format") not in READABLE_FORMATS:
        raise ValueError(f"not an scnn integer model: format {description.get('format')!r} (this version reads "
                         f"{', '.join(READABLE_FORMATS)})")
    if not np.issubdtype(np.asarray(x).dtype, np.integer):
        raise ValueError(f"{what} takes integer input codes, got dtype {np.asarray(x).dtype}; use quantize_input first")
    for index, entry in enumerate(description["layers"]):
        kind = entry["activation"]["type"]
        if kind not in NEURON_TYPES + ("relu", "identity"):
            raise ValueError(f"layer {index}: unknown activation {kind!r} (this version runs "
                             f"{', '.join(NEURON_TYPES + ('relu', 'identity'))})")


def frames_of(description: dict, x: np.ndarray) -> np.ndarray:
    """Sequence input: codes ``[B, C, F, W]`` -> the frames ``[W, B, C, F, 1]`` the steps see."""
    return np.moveaxis(np.asarray(x), 3, 0)[..., None]


def run_integer(description: dict, arrays: dict[str, np.ndarray], x_int: np.ndarray,
                record_membranes: bool = False) -> IntegerOutput:
    """Integer-only inference: x_int ``[B, C, H, W]`` int8 codes (see :func:`quantize_input`); a
    sequence-input artefact (``input_kind`` "sequence") sees column t of them at step t.

    record_membranes: keep every neuron layer's saturated membranes ``[T, B, ...]`` (int64, state units).
    """
    _check_runnable(description, x_int, "run_integer")
    x = np.asarray(x_int)
    sequence = description.get("input_kind", "static") == "sequence"
    batch = len(x)
    if sequence:
        x = frames_of(description, x)
    steps = description["num_steps"]
    spike_counts, recorded = [], []
    for index, entry in enumerate(description["layers"]):
        prefix = f"layer{index}"
        activation = entry["activation"]
        if description["spiking"] and (index > 0 or sequence):  # [T, B, ...]: time folded into the batch
            acc = _synapse(entry, arrays, prefix, x.reshape(steps * batch, *x.shape[2:]))
            acc = acc.reshape(steps, batch, *acc.shape[1:])
        else:
            acc = _synapse(entry, arrays, prefix, x)
        acc_exponent = arrays[f"{prefix}.acc_exponent"]
        channel_axis = _channel_axis(acc, entry)
        if activation["type"] in NEURON_TYPES:
            current = shift_round(acc, activation["state_exponent"] - acc_exponent, channel_axis=channel_axis)
            if index == 0 and not sequence:  # static input: the same current at every step
                current = np.broadcast_to(current, (steps, *current.shape))
            x, membranes = _Neuron(activation, arrays, prefix).run(current)
            if record_membranes:
                recorded.append(membranes)
            spike_counts.append(x.reshape(steps, batch, -1).sum(axis=(0, 2)))
        elif activation["type"] == "relu":
            codes = shift_round(np.maximum(acc, 0), activation["exponent"] - acc_exponent, channel_axis=channel_axis)
            x = np.clip(codes, 0, 2 ** activation["bits"] - 1)
        else:  # identity classifier: bring per-channel accumulators to one exponent
            return IntegerOutput(logits=acc << (acc_exponent - acc_exponent.min())[None, :],
                                 logit_exponent=int(acc_exponent.min()))
    if description["readout"] == "membrane":
        return IntegerOutput(membranes.sum(0), activation["state_exponent"], spike_counts, recorded)
    return IntegerOutput(x.astype(np.int64).sum(0), 0, spike_counts, recorded)


class IntegerStreamer:
    """The integer reference one step at a time, its state kept between calls (a streaming port's shape).

    ``step(x_t)``: for a sequence-input artefact one frame of input codes ``[B, C, F]`` (or
    ``[B, C, F, 1]``), for a static one the input codes ``[B, C, H, W]`` (fed at every step).
    Returns this step's readout ``[B, classes]`` int64: the last layer's saturated membrane
    (units ``2**logit_exponent``), or its spikes for a spike-count readout. ``logits`` sums them,
    ``spike_counts`` counts each neuron layer's spikes per sample so far: after ``num_steps``
    steps both equal :func:`run_integer`'s (tested). ``reset()`` starts a new sample.
    """

    def __init__(self, description: dict, arrays: dict[str, np.ndarray]):
        _check_runnable(description, np.zeros(1, np.int8), "IntegerStreamer")
        if not description["spiking"]:
            raise ValueError("IntegerStreamer runs spiking artefacts; this one is the ReLU control CNN")
        self.description, self.arrays = description, arrays
        self.sequence = description.get("input_kind", "static") == "sequence"
        self.neurons = [_Neuron(entry["activation"], arrays, f"layer{index}")
                        for index, entry in enumerate(description["layers"])]
        last = description["layers"][-1]["activation"]
        self.logit_exponent = last["state_exponent"] if description["readout"] == "membrane" else 0
        self.reset()

    def reset(self) -> None:
        self.states: list[dict | None] = [None] * len(self.neurons)
        self.logits: np.ndarray | None = None
        self.spike_counts: list[np.ndarray] = []
        self.steps = 0

    def step(self, x_t: np.ndarray) -> np.ndarray:
        _check_runnable(self.description, x_t, "IntegerStreamer.step")
        x = np.asarray(x_t)
        if self.sequence and x.ndim == 3:
            x = x[..., None]
        expected = tuple(self.description["input_shape"][:2]) + ((1,) if self.sequence else
                                                                  tuple(self.description["input_shape"][2:]))
        if x.shape[1:] != expected:
            raise ValueError(f"IntegerStreamer.step: expected input codes [B, {', '.join(map(str, expected))}] "
                             f"({'one frame' if self.sequence else 'the static input'}), got {tuple(x.shape)}")
        for index, (entry, neuron) in enumerate(zip(self.description["layers"], self.neurons)):
            prefix = f"layer{index}"
            acc = _synapse(entry, self.arrays, prefix, x)
            current = shift_round(acc, neuron.entry["state_exponent"] - self.arrays[f"{prefix}.acc_exponent"],
                                  channel_axis=_channel_axis(acc, entry))
            state = self.states[index] or neuron.initial_state(current.shape)
            self.states[index] = state = neuron.step(current, state)
            x = state["spike"]
        readout = state["membrane"] if self.description["readout"] == "membrane" else state["spike"]
        counts = [s["spike"].reshape(len(x), -1).sum(1) for s in self.states]
        self.spike_counts = counts if not self.spike_counts else [a + b for a, b in zip(self.spike_counts, counts)]
        self.logits = readout.copy() if self.logits is None else self.logits + readout
        self.steps += 1
        return readout


# --------------------------------------------------------------------------- test vectors


def make_test_vectors(description: dict, arrays: dict[str, np.ndarray], codes: np.ndarray,
                      trace_samples: int = 2, trace_neurons: int = 8) -> dict[str, np.ndarray]:
    """Test vectors of a spiking artefact on input codes ``[N, C, H, W]`` (int8), from :func:`run_integer`.

    input_codes [N, C, H, W] int8; logits [N, classes] int64 (units 2**logit_exponent); predictions [N];
    spike_counts [N, neuron layers] int64 (spikes per sample over all steps and neurons of each layer);
    logit_exponent (scalar); trace.layerI [T, trace_samples, trace_neurons] int64: the saturated
    membrane of the first neurons (flattened C,H,W order) of neuron layer I for the first samples;
    sequence input: frame_logits [T, N, classes] int64, the readout membrane of every frame (what a
    streaming step returns).
    """
    codes = np.asarray(codes)
    if codes.dtype != np.int8:
        raise ValueError(f"test vectors take int8 input codes, got dtype {codes.dtype}; use quantize_input first")
    if not description["spiking"]:
        raise ValueError("test vectors are written for spiking artefacts; this one is the ReLU control CNN")
    result = run_integer(description, arrays, codes, record_membranes=True)
    vectors = {"input_codes": codes, "logits": result.logits.astype(np.int64),
               "predictions": result.predictions.astype(np.int64),
               "spike_counts": np.stack(result.spike_counts, axis=1).astype(np.int64),
               "logit_exponent": np.asarray(result.logit_exponent, np.int64)}
    neuron_layers = [i for i, entry in enumerate(description["layers"]) if entry["activation"]["type"] in NEURON_TYPES]
    for layer, membranes in zip(neuron_layers, result.membranes):
        flat = membranes.reshape(membranes.shape[0], membranes.shape[1], -1)
        vectors[f"trace.layer{layer}"] = flat[:, :trace_samples, :trace_neurons].astype(np.int64)
    if description.get("input_kind", "static") == "sequence" and description["readout"] == "membrane":
        vectors["frame_logits"] = result.membranes[-1].astype(np.int64)  # what a streaming step returns per frame
    return vectors


def check_test_vectors(description: dict, arrays: dict[str, np.ndarray], vectors: dict[str, np.ndarray]) -> int:
    """Run the numpy reference on the vectors' input codes; ValueError listing every mismatching quantity.

    Returns the number of samples checked.
    """
    expected = make_test_vectors(description, arrays, vectors["input_codes"],
                                 trace_samples=_trace_shape(vectors)[0], trace_neurons=_trace_shape(vectors)[1])
    wrong = [name for name in sorted(set(vectors) | set(expected))
             if name not in vectors or name not in expected or not np.array_equal(vectors[name], expected[name])]
    if wrong:
        raise ValueError(f"test vectors disagree with the integer reference in: {', '.join(wrong)}")
    return len(vectors["input_codes"])


def _trace_shape(vectors: dict) -> tuple[int, int]:
    traces = [value for name, value in vectors.items() if name.startswith("trace.")]
    return (traces[0].shape[1], traces[0].shape[2]) if traces else (0, 0)
