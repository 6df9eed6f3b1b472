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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scnn.io import atomic_write, write_text

FORMAT = "scnn-integer-v2"
# v1 (before the spec) has the same arrays and arithmetic, without front end, normaliser, widths and vectors
READABLE_FORMATS = ("scnn-integer-v1", FORMAT)

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
    "convolution": {"padding": 0, "stride": 1, "dilation": 1, "groups": 1, "kernel": "square, weight [O, C, k, k]",
                    "output": "H - k + 1, W - k + 1 (valid)"},
    "pooling": "max pooling of the accumulators (bias added, before requantisation), kernel = stride = pool, "
               "floor (trailing rows/columns dropped)",
    "first_layer": "its input is static: the accumulator and current are computed once and fed at every step",
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
                 **({"padding": 0, "stride": 1, "kernel": int(layer.weight.shape[-1])} if layer.weight.dim() == 4
                    else {}),
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
    description["widths"] = integer_widths(description, arrays)
    return description, arrays


def _signed_bits(bound: int) -> int:
    """Bits of the smallest two's-complement integer type range that holds [-bound, bound]."""
    return int(bound).bit_length() + 1


def integer_widths(description: dict, arrays: dict[str, np.ndarray]) -> list[dict]:
    """Worst-case magnitudes (over every possible input) of each stage, per layer, and the signed bits they need.

    acc: ``sum |W| * max|x| + |b|`` per output channel (x: input codes for the first layer, 0/1
    spikes or ReLU codes after); current: acc after requantisation; membrane_sum: the LIF sum before
    saturation (``max|leak(U)| + |I| + threshold``); logits: what the readout sums over the steps.
    """
    widths = []
    bits = description["input"]["bits"]
    in_max = 2 ** (bits - 1)  # |code| <= 2**(bits-1)
    for index, entry in enumerate(description["layers"]):
        prefix = f"layer{index}"
        weight = np.abs(arrays[f"{prefix}.weight"].astype(np.int64)).reshape(len(arrays[f"{prefix}.weight"]), -1)
        acc = weight.sum(1) * in_max + np.abs(arrays[f"{prefix}.bias"].astype(np.int64))
        row = {"layer": index, "input_max": int(in_max), "acc_max": int(acc.max()), "acc_bits": _signed_bits(acc.max())}
        activation = entry["activation"]
        if activation["type"] == "lif":
            shift = activation["state_exponent"] - arrays[f"{prefix}.acc_exponent"]
            current = shift_round(acc, np.broadcast_to(shift, acc.shape), channel_axis=0)  # monotonic: exact bound
            state = max(-activation["state_min"], activation["state_max"])
            threshold = int(arrays[f"{prefix}.threshold"].max())
            row.update(current_max=int(current.max()), current_bits=_signed_bits(current.max()),
                       membrane_sum_max=int(state + current.max() + threshold),
                       membrane_sum_bits=_signed_bits(state + current.max() + threshold),
                       state_bits=activation["bits"])
            if index == len(description["layers"]) - 1:
                logits = description["num_steps"] * (state if description["readout"] == "membrane" else 1)
                row.update(logits_max=int(logits), logits_bits=_signed_bits(logits))
            in_max = 1
        elif activation["type"] == "relu":
            in_max = 2 ** activation["bits"] - 1
        widths.append(row)
    return widths


def _lif_entry(lif, prefix: str, arrays: dict) -> dict:
    low, high = lif.state_limits
    arrays[f"{prefix}.threshold"] = lif.threshold_int.cpu().numpy().astype(np.int64).reshape(-1)
    arrays[f"{prefix}.leak_shift"] = lif.leak_shift.cpu().numpy().astype(np.int64).reshape(-1)
    arrays[f"{prefix}.leak_multiplier"] = lif.leak_multiplier.cpu().numpy().astype(np.int64).reshape(-1)
    return {"type": "lif", "bits": lif.bits, "state_exponent": int(lif.state_exponent), "state_min": low,
            "state_max": high, "leak": lif.leak_mode, "leak_bits": lif.leak_bits,
            "reset": "zero" if lif.reset_to_zero else "subtract"}


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


def run_integer(description: dict, arrays: dict[str, np.ndarray], x_int: np.ndarray,
                record_membranes: bool = False) -> IntegerOutput:
    """Integer-only inference: x_int ``[B, C, H, W]`` int8 codes (see :func:`quantize_input`).

    record_membranes: keep every LIF layer's saturated membranes ``[T, B, ...]`` (int64, state units).
    """
    if description.get("format") not in READABLE_FORMATS:
        raise ValueError(f"not an scnn integer model: format {description.get('format')!r}")
    x = np.asarray(x_int)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"run_integer takes integer input codes, got dtype {x.dtype}; use quantize_input first")
    steps, batch = description["num_steps"], len(x)
    spike_counts, recorded = [], []
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


# --------------------------------------------------------------------------- test vectors


def make_test_vectors(description: dict, arrays: dict[str, np.ndarray], codes: np.ndarray,
                      trace_samples: int = 2, trace_neurons: int = 8) -> dict[str, np.ndarray]:
    """Test vectors of a spiking artefact on input codes ``[N, C, H, W]`` (int8), from :func:`run_integer`.

    input_codes [N, C, H, W] int8; logits [N, classes] int64 (units 2**logit_exponent); predictions [N];
    spike_counts [N, LIF layers] int64 (spikes per sample over all steps and neurons of each layer);
    logit_exponent (scalar); trace.layerI [T, trace_samples, trace_neurons] int64: the saturated
    membrane of the first neurons (flattened C,H,W order) of LIF layer I for the first samples.
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
    lif_layers = [i for i, entry in enumerate(description["layers"]) if entry["activation"]["type"] == "lif"]
    for layer, membranes in zip(lif_layers, result.membranes):
        flat = membranes.reshape(membranes.shape[0], membranes.shape[1], -1)
        vectors[f"trace.layer{layer}"] = flat[:, :trace_samples, :trace_neurons].astype(np.int64)
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
