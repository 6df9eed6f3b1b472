"""C99 integer inference from an integer artefact (docs/integer_format.md): :func:`export_c`.

The generated folder is self-contained and needs nothing but a C99 compiler:

    scnn_model.h      the API, the model's sizes and the memory it needs (documented in the header)
    scnn_model.c      weights (const int8_t), biases (const int32_t), the integer LIF, classify and step
    scnn_vectors.h    the artefact's test vectors (input codes, logits, spike counts, membrane traces)
    scnn_harness.c    checks the test vectors; on a host also runs int8 codes from a file
    cortex-m4/        startup code and linker script for an MPS2 Cortex-M4 board (qemu, semihosting)
    Makefile          host and Cortex-M4 builds

What the C code does is what :func:`scnn.quant.integer.run_integer` does, in the same order, in int32
(the export refuses a model whose worst-case widths, :func:`scnn.quant.integer.integer_widths`, need
more): no dynamic memory, no floating point except ``scnn_quantize_input`` (and the normaliser).
Fully connected weights are stored transposed, ``[inputs][outputs]``, so a spike adds one contiguous
row (event-driven); convolution weights keep ``[O][C][k][k]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scnn.io import write_text
from scnn.quant.integer import integer_widths, load_integer, load_test_vectors, vectors_path

FILES = ("scnn_model.h", "scnn_model.c", "scnn_vectors.h", "scnn_harness.c", "Makefile",
         "cortex-m4/startup.c", "cortex-m4/link.ld")


def _array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    flat = np.asarray(values).reshape(-1).tolist()
    lines = [", ".join(str(v) for v in flat[i:i + per_line]) for i in range(0, len(flat), per_line)] or ["0"]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{max(len(flat), 1)}] = {{\n    {body}\n}};\n"


def _check_supported(description: dict, arrays: dict) -> list[dict]:
    """Layer geometry for the C code; ValueError naming the layer for anything the C code does not implement."""
    if not description.get("spiking"):
        raise ValueError("export-c: only spiking artefacts are supported (this is the ReLU control CNN)")
    widths = description.get("widths") or integer_widths(description, arrays)
    layers, shape = [], tuple(description["input_shape"])  # (C, H, W) of the layer's input
    for index, entry in enumerate(description["layers"]):
        activation = entry["activation"]
        if activation["type"] != "lif":
            raise ValueError(f"export-c: layer {index} has a {activation['type']!r} activation; the C code runs "
                             "nets whose every layer is a LIF")
        if activation["bits"] > 16:
            raise ValueError(f"export-c: layer {index} has a {activation['bits']}-bit state; int16_t holds 16")
        width = widths[index]
        for key in ("acc_bits", "current_bits", "membrane_sum_bits", "logits_bits"):
            if width.get(key, 0) > 32:
                raise ValueError(f"export-c: layer {index} needs {width[key]}-bit {key[:-5]} values (int32 holds 32)")
        shift = activation["state_exponent"] - arrays[f"layer{index}.acc_exponent"]
        if shift.max() > 30:
            raise ValueError(f"export-c: layer {index} requantises by a right shift of {shift.max()} (> 30)")
        weight = arrays[f"layer{index}.weight"]
        out_channels, pool = weight.shape[0], entry["pool"]
        if entry["type"] == "conv":
            if entry.get("padding", 0) != 0 or entry.get("stride", 1) != 1:
                raise ValueError(f"export-c: layer {index} convolution has padding/stride other than 0/1")
            if len(shape) != 3 or shape[0] != weight.shape[1]:
                raise ValueError(f"export-c: layer {index} convolution takes {weight.shape[1]} channels, gets {shape}")
            k = weight.shape[-1]
            conv_h, conv_w = shape[1] - k + 1, shape[2] - k + 1
            out_h, out_w = (conv_h // pool, conv_w // pool) if pool else (conv_h, conv_w)
            layer = dict(type=0, in_c=shape[0], in_h=shape[1], in_w=shape[2], k=k, pool=pool, out_c=out_channels,
                         out_h=out_h, out_w=out_w, inputs=int(np.prod(shape)))
            shape = (out_channels, out_h, out_w)
        else:
            inputs = int(np.prod(shape))
            if pool or inputs != weight.shape[1]:
                raise ValueError(f"export-c: layer {index} fully connected layer takes {weight.shape[1]} inputs, "
                                 f"gets {shape} (or pools)")
            layer = dict(type=1, in_c=inputs, in_h=1, in_w=1, k=1, pool=0, out_c=out_channels, out_h=1, out_w=1,
                         inputs=inputs)
            shape = (out_channels,)
        layer["neurons"] = layer["out_c"] * layer["out_h"] * layer["out_w"]
        layers.append(layer)
    return layers


def _per_channel(values: np.ndarray, channels: int) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    return np.broadcast_to(values, (channels,)) if values.size == 1 else values


def export_c(artefact: str | Path, out_dir: str | Path) -> dict:
    """Write the C library, harness and Cortex-M4 support for the integer artefact ``artefact`` (a stem:
    ``.../integer`` for integer.json + integer.npz (+ integer.vectors.npz)) into ``out_dir``.

    Returns {"files": [...], "state_bytes": sizeof the state struct, "weight_bytes", "vectors": N}.
    """
    stem = Path(artefact)
    stem = stem.with_suffix("") if stem.suffix in (".json", ".npz") else stem
    if not stem.with_suffix(".json").is_file():
        raise FileNotFoundError(f"{stem.with_suffix('.json')}: no integer artefact (scnn quantize writes integer.json)")
    description, arrays = load_integer(stem)
    layers = _check_supported(description, arrays)
    vectors = load_test_vectors(stem) if vectors_path(stem).is_file() else None
    out = Path(out_dir)
    (out / "cortex-m4").mkdir(parents=True, exist_ok=True)
    model_c, weight_bytes = _model_source(description, arrays, layers)
    header, state_bytes = _header(description, arrays, layers)
    write_text(out / "scnn_model.h", header)
    write_text(out / "scnn_model.c", model_c)
    write_text(out / "scnn_vectors.h", _vectors_header(description, layers, vectors))
    write_text(out / "scnn_harness.c", HARNESS)
    write_text(out / "Makefile", MAKEFILE)
    write_text(out / "cortex-m4" / "startup.c", STARTUP)
    write_text(out / "cortex-m4" / "link.ld", LINKER)
    return {"files": list(FILES), "state_bytes": state_bytes, "weight_bytes": weight_bytes,
            "vectors": 0 if vectors is None else int(len(vectors["input_codes"]))}


def _header(description: dict, arrays: dict, layers: list[dict]) -> tuple[str, int]:
    neurons = [layer["neurons"] for layer in layers]
    total = sum(neurons)
    fc_outputs = max([layer["out_c"] for layer in layers if layer["type"] == 1] or [1])
    classes = layers[-1]["neurons"]
    c, h, w = description["input_shape"]
    state_bytes = 4 * neurons[0] + 2 * total + total + 4 * fc_outputs + 4 * classes + 4 * len(layers) + 8 + 4
    normalizer = description.get("normalizer")
    rows = len(arrays["input.norm_mean"]) if normalizer else 0
    shape = " -> ".join(f"{'conv' if l['type'] == 0 else 'fc'} {l['out_c']}x{l['out_h']}x{l['out_w']}" for l in layers)
    text = f"""/* scnn integer model: generated by `scnn export-c` from a {description['format']} artefact.
 * The arithmetic is specified in scnn's docs/integer_format.md; this code is checked bit-exact against
 * scnn.quant.integer.run_integer (logits, spike counts, membrane traces).
 *
 * Net: input {c}x{h}x{w} int8 codes -> {shape}, {description['num_steps']} steps, readout {description['readout']}.
 *
 * Memory: no dynamic allocation. Flash: the weights and biases in scnn_model.c (const). RAM: one
 * scnn_state_t per concurrent inference, sizeof(scnn_state_t) = {state_bytes} bytes here
 * (layer-0 current int32 x {neurons[0]}, membranes int16 x {total}, spikes uint8 x {total}, fc accumulator
 * scratch int32 x {fc_outputs}, logits int32 x {classes}, spike counts), plus the caller's int8 input
 * ({c * h * w} bytes) and a few hundred bytes of stack. No floating point except scnn_quantize_input
 * (and scnn_normalize_features).
 */
#ifndef SCNN_MODEL_H
#define SCNN_MODEL_H

#include <stdint.h>

#define SCNN_INPUT_SIZE {c * h * w}
#define SCNN_NUM_CLASSES {classes}
#define SCNN_NUM_STEPS {description['num_steps']}
#define SCNN_NUM_LAYERS {len(layers)}
#define SCNN_TOTAL_NEURONS {total}
#define SCNN_LAYER0_NEURONS {neurons[0]}
#define SCNN_FC_SCRATCH {fc_outputs}
#define SCNN_NORM_ROWS {rows}
#define SCNN_LOGIT_EXPONENT {description['layers'][-1]['activation']['state_exponent'] if description['readout'] == 'membrane' else 0}

/* Offsets of each layer's neurons in membrane[] and spikes[] (C,H,W order within a layer). */
extern const uint32_t scnn_layer_offset[SCNN_NUM_LAYERS];
extern const uint32_t scnn_layer_neurons[SCNN_NUM_LAYERS];

typedef struct {{
    int32_t current0[SCNN_LAYER0_NEURONS];   /* layer-0 current, computed once per sample (static input) */
    int16_t membrane[SCNN_TOTAL_NEURONS];    /* saturated membranes U[t] of every layer */
    uint8_t spikes[SCNN_TOTAL_NEURONS];      /* spikes S[t] of every layer (0/1) */
    int32_t scratch[SCNN_FC_SCRATCH];        /* fully connected accumulators */
    int32_t logits[SCNN_NUM_CLASSES];        /* readout so far, units 2**SCNN_LOGIT_EXPONENT */
    uint32_t spike_counts[SCNN_NUM_LAYERS];  /* spikes so far per layer */
    int32_t step;                            /* steps done */
}} scnn_state_t;

/* Streaming: reset the state and compute the layer-0 current of int8 codes [{c}][{h}][{w}]. */
void scnn_begin(scnn_state_t *state, const int8_t *codes);
/* Advance one time step (returns the number of steps done); logits and spike counts accumulate. */
int32_t scnn_step(scnn_state_t *state);
/* One call: begin + SCNN_NUM_STEPS steps; copies the logits (may be NULL) and returns the predicted class. */
int32_t scnn_classify(scnn_state_t *state, const int8_t *codes, int32_t *logits);
/* First index of the largest logit. */
int32_t scnn_argmax(const int32_t *logits);
/* The input quantiser (the only floating point): normalised features x [SCNN_INPUT_SIZE] -> int8 codes. */
void scnn_quantize_input(const float *x, int8_t *codes);
/* The artefact's normaliser, in place on front-end features [rows][frames] (identity when disabled). */
void scnn_normalize_features(float *features, int32_t frames);

#endif
"""
    return text, state_bytes


def _model_source(description: dict, arrays: dict, layers: list[dict]) -> tuple[str, int]:
    parts = ['#include "scnn_model.h"\n\n/* Generated by `scnn export-c`; see scnn_model.h. */\n\n']
    weight_bytes = 0
    table = []
    offset = 0
    for index, (entry, layer) in enumerate(zip(description["layers"], layers)):
        prefix, activation = f"layer{index}", entry["activation"]
        weight = arrays[f"{prefix}.weight"].astype(np.int8)
        if layer["type"] == 1:
            weight = np.ascontiguousarray(weight.T)  # [inputs][outputs]: one row per input spike
        channels = layer["out_c"]
        shift = _per_channel(activation["state_exponent"] - arrays[f"{prefix}.acc_exponent"], channels)
        parts.append(_array("int8_t", f"w{index}", weight))
        parts.append(_array("int32_t", f"b{index}", arrays[f"{prefix}.bias"].astype(np.int32)))
        parts.append(_array("int8_t", f"shift{index}", shift.astype(np.int8)))
        parts.append(_array("int32_t", f"thr{index}", _per_channel(arrays[f"{prefix}.threshold"], channels)))
        parts.append(_array("uint8_t", f"leakk{index}", _per_channel(arrays[f"{prefix}.leak_shift"], channels)))
        parts.append(_array("int32_t", f"leakm{index}", _per_channel(arrays[f"{prefix}.leak_multiplier"], channels)))
        weight_bytes += weight.size + 4 * channels
        table.append(
            f"    {{{layer['type']}, {layer['in_c']}, {layer['in_h']}, {layer['in_w']}, {layer['k']}, {layer['pool']}, "
            f"{layer['out_c']}, {layer['out_h']}, {layer['out_w']}, {layer['inputs']}, {layer['neurons']}, {offset}, "
            f"w{index}, b{index}, shift{index}, thr{index}, leakk{index}, leakm{index}, "
            f"{1 if activation['leak'] == 'fixed' else 0}, {activation['leak_bits']}, "
            f"{1 if activation['reset'] == 'zero' else 0}, {activation['state_min']}, {activation['state_max']}}}")
        offset += layer["neurons"]
    parts.append("const uint32_t scnn_layer_offset[SCNN_NUM_LAYERS] = {"
                 + ", ".join(str(sum(l["neurons"] for l in layers[:i])) for i in range(len(layers))) + "};\n")
    parts.append("const uint32_t scnn_layer_neurons[SCNN_NUM_LAYERS] = {"
                 + ", ".join(str(l["neurons"]) for l in layers) + "};\n\n")
    normalizer = description.get("normalizer")
    if normalizer and normalizer["enabled"]:
        parts.append(_float_array("norm_mean", arrays["input.norm_mean"]))
        parts.append(_float_array("norm_std", arrays["input.norm_std"]))
    parts.append(f"#define SCNN_NORM_ENABLED {1 if normalizer and normalizer['enabled'] else 0}\n")
    parts.append(f"#define SCNN_INPUT_EXPONENT {description['input']['exponent']}\n")
    parts.append(f"#define SCNN_INPUT_BITS {description['input']['bits']}\n")
    parts.append(f"#define SCNN_READOUT_MEMBRANE {1 if description['readout'] == 'membrane' else 0}\n")
    parts.append(LAYER_STRUCT + "static const scnn_layer_t layers[SCNN_NUM_LAYERS] = {\n" + ",\n".join(table)
                 + "\n};\n" + ENGINE)
    return "".join(parts), weight_bytes


def _float_array(name: str, values: np.ndarray) -> str:
    # %.9g round-trips a float32 exactly
    body = ", ".join(f"{float(v):.9g}f" for v in np.asarray(values, np.float32).tolist())
    return f"static const float {name}[{len(values)}] = {{{body}}};\n"


def _vectors_header(description: dict, layers: list[dict], vectors: dict | None) -> str:
    if vectors is None:  # empty tables: the harness then checks nothing and says so
        vectors = {"input_codes": np.zeros((0,), np.int8), "logits": np.zeros((0,)), "predictions": np.zeros((0,)),
                   "spike_counts": np.zeros((0,))}
    n = len(vectors["input_codes"])
    traces = [(index, vectors[f"trace.layer{index}"]) for index in range(len(layers))
              if f"trace.layer{index}" in vectors]
    samples = traces[0][1].shape[1] if traces else 0
    neurons = max((trace.shape[2] for _, trace in traces), default=0)
    parts = [f"/* Test vectors of the integer artefact ({n} samples), generated by `scnn export-c`. */\n",
             f"#define SCNN_NUM_VECTORS {n}\n#define SCNN_TRACE_SAMPLES {samples}\n#define SCNN_TRACE_NEURONS {neurons}\n",
             _array("int8_t", "vector_codes", vectors["input_codes"].astype(np.int8)),
             _array("int32_t", "vector_logits", vectors["logits"].astype(np.int32)),
             _array("int32_t", "vector_predictions", vectors["predictions"].astype(np.int32)),
             _array("uint32_t", "vector_spike_counts", vectors["spike_counts"].astype(np.uint32))]
    # traces [T, samples, neurons] -> one table [layers][T][samples][neurons] (narrow layers padded)
    stacked = np.stack([np.pad(trace, ((0, 0), (0, 0), (0, neurons - trace.shape[2]))) for _, trace in traces]) \
        if traces else np.zeros((0,))
    parts.append(_array("int32_t", "vector_traces", stacked.astype(np.int32)))
    return "".join(parts)


LAYER_STRUCT = r"""
typedef struct {
    uint8_t type;                  /* 0 conv (valid, stride 1, max pool), 1 fully connected */
    uint16_t in_c, in_h, in_w;     /* input [C][H][W] (fc: in_c = inputs) */
    uint8_t k, pool;               /* conv kernel k x k; pool window = stride (0: none) */
    uint16_t out_c, out_h, out_w;  /* output [C][H][W] after pooling */
    uint32_t inputs, neurons, offset;
    const int8_t *w;               /* conv [O][C][k][k]; fc transposed [inputs][O] */
    const int32_t *b;              /* bias per output channel, accumulator units */
    const int8_t *shift;           /* requantisation right shift s = state_exponent - acc_exponent (<= 0: left) */
    const int32_t *thr;            /* threshold per channel, state units */
    const uint8_t *leak_k;         /* leak "shift": U - (U >> k) */
    const int32_t *leak_m;         /* leak "fixed": (U * m) >> leak_bits */
    uint8_t leak_fixed, leak_bits, reset_zero;
    int32_t state_min, state_max;
} scnn_layer_t;
"""

ENGINE = r"""
/* Flooring (arithmetic) right shift: >> of a negative int is implementation-defined in C. */
static int32_t asr(int32_t x, int32_t k) { return x >= 0 ? x >> k : ~(~x >> k); }

/* round_half_even(acc / 2**s) for s > 0; exact acc * 2**-s for s <= 0 (widths checked at export). */
static int32_t requantise(int32_t acc, int32_t s) {
    int32_t floor_value, remainder, half;
    if (s <= 0) return acc * ((int32_t)1 << -s);
    floor_value = asr(acc, s);
    remainder = acc - floor_value * ((int32_t)1 << s);
    half = (int32_t)1 << (s - 1);
    if (remainder > half || (remainder == half && (floor_value % 2) != 0)) floor_value += 1;
    return floor_value;
}

/* Pooled accumulator of conv output (o, y, x) on int8 codes (codes != 0) or 0/1 spikes. */
static int32_t conv_acc(const scnn_layer_t *l, const int8_t *codes, const uint8_t *spikes, uint32_t o,
                        uint32_t y, uint32_t x) {
    uint32_t window = l->pool ? l->pool : 1, py, px, c, i, j;
    int32_t best = 0;
    for (py = 0; py < window; ++py) {
        for (px = 0; px < window; ++px) {
            uint32_t cy = y * window + py, cx = x * window + px;
            int32_t acc = l->b[o];
            for (c = 0; c < l->in_c; ++c) {
                const int8_t *w = l->w + ((o * l->in_c + c) * l->k) * l->k;
                uint32_t base = (c * l->in_h + cy) * l->in_w + cx;
                for (i = 0; i < l->k; ++i) {
                    for (j = 0; j < l->k; ++j) {
                        uint32_t at = base + i * l->in_w + j;
                        if (codes) acc += (int32_t)w[i * l->k + j] * (int32_t)codes[at];
                        else if (spikes[at]) acc += (int32_t)w[i * l->k + j];
                    }
                }
            }
            if ((py == 0 && px == 0) || acc > best) best = acc;
        }
    }
    return best;
}

/* Accumulators of a fully connected layer into scratch[out_c]: event-driven on spikes. */
static void fc_acc(const scnn_layer_t *l, const int8_t *codes, const uint8_t *spikes, int32_t *scratch) {
    uint32_t i, o;
    for (o = 0; o < l->out_c; ++o) scratch[o] = l->b[o];
    for (i = 0; i < l->inputs; ++i) {
        const int8_t *row = l->w + i * l->out_c;
        if (codes) {
            int32_t value = codes[i];
            if (value != 0) for (o = 0; o < l->out_c; ++o) scratch[o] += (int32_t)row[o] * value;
        } else if (spikes[i]) {
            for (o = 0; o < l->out_c; ++o) scratch[o] += (int32_t)row[o];
        }
    }
}

/* Current of every neuron of layer l (conv: per output position; fc: via scratch). */
static int32_t current_of(scnn_state_t *state, const scnn_layer_t *l, const int8_t *codes, const uint8_t *spikes,
                          uint32_t n) {
    uint32_t channel;
    if (l->type == 0) {
        uint32_t plane = (uint32_t)l->out_h * l->out_w;
        channel = n / plane;
        return requantise(conv_acc(l, codes, spikes, channel, (n % plane) / l->out_w, n % l->out_w),
                          l->shift[channel]);
    }
    return requantise(state->scratch[n], l->shift[n]);
}

void scnn_begin(scnn_state_t *state, const int8_t *codes) {
    const scnn_layer_t *l = &layers[0];
    uint32_t n;
    for (n = 0; n < SCNN_TOTAL_NEURONS; ++n) { state->membrane[n] = 0; state->spikes[n] = 0; }
    for (n = 0; n < SCNN_NUM_CLASSES; ++n) state->logits[n] = 0;
    for (n = 0; n < SCNN_NUM_LAYERS; ++n) state->spike_counts[n] = 0;
    if (l->type == 1) fc_acc(l, codes, 0, state->scratch);
    for (n = 0; n < l->neurons; ++n) state->current0[n] = current_of(state, l, codes, 0, n);
    state->step = 0;
}

/* The integer LIF (docs/integer_format.md): reset from the previous spike, not leaked; saturate once; strict >. */
static uint32_t lif(scnn_state_t *state, const scnn_layer_t *l, uint32_t n, int32_t current) {
    uint32_t channel = l->type == 0 ? n / ((uint32_t)l->out_h * l->out_w) : n;
    int16_t *membrane = &state->membrane[l->offset + n];
    uint8_t *spike = &state->spikes[l->offset + n];
    int32_t kept = *membrane, leaked, u;
    if (l->reset_zero && *spike) kept = 0;
    leaked = l->leak_fixed ? asr(kept * l->leak_m[channel], l->leak_bits) : kept - asr(kept, l->leak_k[channel]);
    u = leaked + current;
    if (!l->reset_zero && *spike) u -= l->thr[channel];
    if (u < l->state_min) u = l->state_min;
    if (u > l->state_max) u = l->state_max;
    *membrane = (int16_t)u;
    *spike = (uint8_t)(u > l->thr[channel]);
    return *spike;
}

int32_t scnn_step(scnn_state_t *state) {
    uint32_t index, n;
    for (index = 0; index < SCNN_NUM_LAYERS; ++index) {
        const scnn_layer_t *l = &layers[index];
        const uint8_t *input = index ? &state->spikes[layers[index - 1].offset] : 0;
        uint32_t count = 0;
        if (index && l->type == 1) fc_acc(l, 0, input, state->scratch);
        for (n = 0; n < l->neurons; ++n)
            count += lif(state, l, n, index ? current_of(state, l, 0, input, n) : state->current0[n]);
        state->spike_counts[index] += count;
    }
    {
        const scnn_layer_t *last = &layers[SCNN_NUM_LAYERS - 1];
        for (n = 0; n < SCNN_NUM_CLASSES; ++n)
            state->logits[n] += SCNN_READOUT_MEMBRANE ? state->membrane[last->offset + n] : state->spikes[last->offset + n];
    }
    return ++state->step;
}

int32_t scnn_argmax(const int32_t *logits) {
    int32_t best = 0, c;
    for (c = 1; c < SCNN_NUM_CLASSES; ++c) if (logits[c] > logits[best]) best = c;
    return best;
}

int32_t scnn_classify(scnn_state_t *state, const int8_t *codes, int32_t *logits) {
    int32_t c;
    scnn_begin(state, codes);
    while (state->step < SCNN_NUM_STEPS) scnn_step(state);
    if (logits) for (c = 0; c < SCNN_NUM_CLASSES; ++c) logits[c] = state->logits[c];
    return scnn_argmax(state->logits);
}

void scnn_quantize_input(const float *x, int8_t *codes) {
#if SCNN_INPUT_EXPONENT >= 0
    const float scale = 1.0f / (float)(1L << SCNN_INPUT_EXPONENT);
#else
    const float scale = (float)(1L << -SCNN_INPUT_EXPONENT);
#endif
    const int32_t low = -(1 << (SCNN_INPUT_BITS - 1)), high = (1 << (SCNN_INPUT_BITS - 1)) - 1;
    uint32_t n;
    for (n = 0; n < SCNN_INPUT_SIZE; ++n) {
        float v = x[n] * scale, d;
        int32_t q;
        if (v > 1000.0f) v = 1000.0f;   /* far outside the code range: clipped below anyway */
        if (v < -1000.0f) v = -1000.0f;
        q = (int32_t)v;                 /* toward zero, exact for |v| < 2**24 */
        d = v - (float)q;               /* exact */
        if (d > 0.5f || (d == 0.5f && (q % 2) != 0)) q += 1;       /* round half to even */
        else if (d < -0.5f || (d == -0.5f && (q % 2) != 0)) q -= 1;
        codes[n] = (int8_t)(q < low ? low : (q > high ? high : q));
    }
}

void scnn_normalize_features(float *features, int32_t frames) {
#if SCNN_NORM_ENABLED
    int32_t row, frame;
    for (row = 0; row < SCNN_NORM_ROWS; ++row)
        for (frame = 0; frame < frames; ++frame)
            features[row * frames + frame] = (features[row * frames + frame] - norm_mean[row]) / norm_std[row];
#else
    (void)features; (void)frames;
#endif
}
"""

HARNESS = r"""/* Harness of the generated scnn model: checks the embedded test vectors (logits, predictions, spike
 * counts, membrane traces through the streaming step function) and, on a host, runs int8 codes from a file:
 *     ./harness [CODES.bin]     CODES.bin: N x SCNN_INPUT_SIZE int8 codes; prints one line per sample:
 *     "pred L0 .. L9 | S0 .. S(layers-1)"   (prediction, logits, spike counts per layer)
 * Exit status 0 when every vector matches. With -DSCNN_SEMIHOSTING it prints through ARM semihosting
 * and has no file input (Cortex-M4 under qemu). */
#include "scnn_model.h"
#include "scnn_vectors.h"

#ifdef SCNN_SEMIHOSTING
static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
static void out(const char *text) { semihost(0x04, text); }     /* SYS_WRITE0 */
#else
#include <stdio.h>
static void out(const char *text) { fputs(text, stdout); }
#endif

static void out_int(long value) {
    char buffer[24];
    int at = 22;
    unsigned long magnitude = value < 0 ? 0UL - (unsigned long)value : (unsigned long)value;
    buffer[23] = 0;
    do { buffer[at--] = (char)('0' + magnitude % 10); magnitude /= 10; } while (magnitude);
    if (value < 0) buffer[at--] = '-';
    out(&buffer[at + 1]);
}

static void out_result(const scnn_state_t *state, int32_t prediction) {
    int32_t i;
    out_int(prediction);
    for (i = 0; i < SCNN_NUM_CLASSES; ++i) { out(" "); out_int(state->logits[i]); }
    out(" |");
    for (i = 0; i < SCNN_NUM_LAYERS; ++i) { out(" "); out_int((long)state->spike_counts[i]); }
    out("\n");
}

static scnn_state_t state;  /* static: no stack or heap for the model state */

static int check_vectors(void) {
    int32_t n, i, bad = 0;
    for (n = 0; n < SCNN_NUM_VECTORS; ++n) {
        int32_t logits[SCNN_NUM_CLASSES], prediction = scnn_classify(&state, &vector_codes[n * SCNN_INPUT_SIZE], logits);
        int ok = prediction == vector_predictions[n];
        for (i = 0; i < SCNN_NUM_CLASSES; ++i) ok &= logits[i] == vector_logits[n * SCNN_NUM_CLASSES + i];
        for (i = 0; i < SCNN_NUM_LAYERS; ++i) ok &= state.spike_counts[i] == vector_spike_counts[n * SCNN_NUM_LAYERS + i];
        out(ok ? "vector " : "MISMATCH vector ");
        out_int(n);
        out(": ");
        out_result(&state, prediction);
        bad += !ok;
    }
#if SCNN_NUM_VECTORS > 0
    for (n = 0; n < SCNN_TRACE_SAMPLES; ++n) {  /* membranes step by step through the streaming API */
        int32_t t, l, k;
        scnn_begin(&state, &vector_codes[n * SCNN_INPUT_SIZE]);
        for (t = 0; t < SCNN_NUM_STEPS; ++t) {
            scnn_step(&state);
            for (l = 0; l < SCNN_NUM_LAYERS; ++l)
                for (k = 0; k < SCNN_TRACE_NEURONS && (uint32_t)k < scnn_layer_neurons[l]; ++k) {
                    int32_t expected = vector_traces[((l * SCNN_NUM_STEPS + t) * SCNN_TRACE_SAMPLES + n)
                                                     * SCNN_TRACE_NEURONS + k];
                    if (state.membrane[scnn_layer_offset[l] + k] != expected) {
                        out("MISMATCH trace sample "); out_int(n); out(" step "); out_int(t);
                        out(" layer "); out_int(l); out(" neuron "); out_int(k); out("\n");
                        bad += 1;
                    }
                }
        }
    }
#endif
    out("vectors "); out_int(SCNN_NUM_VECTORS); out(" mismatches "); out_int(bad); out("\n");
    return bad;
}

#ifdef SCNN_SEMIHOSTING
int main(void) { return check_vectors() ? 1 : 0; }
#else
int main(int argc, char **argv) {
    static int8_t codes[SCNN_INPUT_SIZE];
    int bad = check_vectors();
    if (argc > 1) {
        FILE *file = fopen(argv[1], "rb");
        if (!file) { fprintf(stderr, "harness: cannot open %s\n", argv[1]); return 2; }
        while (fread(codes, 1, SCNN_INPUT_SIZE, file) == SCNN_INPUT_SIZE) out_result(&state, scnn_classify(&state, codes, 0));
        fclose(file);
    }
    return bad ? 1 : 0;
}
#endif
"""

MAKEFILE = """# Host: make harness        Cortex-M4 (MPS2-AN386 under qemu): make m4 && make run-m4
CC ?= cc
CFLAGS ?= -O2 -std=c99 -Wall -Wextra -Werror
M4_CC ?= arm-none-eabi-gcc
M4_FLAGS = -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -std=c99 -Wall -Wextra -Werror \\
	-ffunction-sections -fdata-sections

harness: scnn_harness.c scnn_model.c scnn_model.h scnn_vectors.h
	$(CC) $(CFLAGS) -o $@ scnn_harness.c scnn_model.c

m4: scnn_harness.c scnn_model.c cortex-m4/startup.c cortex-m4/link.ld
	$(M4_CC) $(M4_FLAGS) -DSCNN_SEMIHOSTING -nostartfiles --specs=nano.specs --specs=nosys.specs \\
		-Wl,--gc-sections -T cortex-m4/link.ld -o harness-m4.elf scnn_harness.c scnn_model.c cortex-m4/startup.c
	$(M4_CC) $(M4_FLAGS) -c -o scnn_model-m4.o scnn_model.c

run-m4: m4
	qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -semihosting-config enable=on,target=native \\
		-kernel harness-m4.elf
"""

STARTUP = r"""/* Minimal Cortex-M4 startup for the MPS2-AN386 board (qemu): vector table, .data/.bss set-up, FPU on,
 * main(), then a semihosting exit whose status qemu returns (0 when main returns 0). */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

static void semihosting_exit(int ok) {
    register int r0 __asm__("r0") = 0x18;                      /* SYS_EXIT */
    register int r1 __asm__("r1") = ok ? 0x20026 : 0x20024;    /* ApplicationExit / RunTimeErrorUnknown */
    __asm__ volatile("bkpt 0xAB" : : "r"(r0), "r"(r1) : "memory");
}

void reset_handler(void) {
    uint32_t *source = &_sidata, *target;
    for (target = &_sdata; target < &_edata;) *target++ = *source++;
    for (target = &_sbss; target < &_ebss;) *target++ = 0;
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;           /* CPACR: CP10, CP11 full access (the FPU) */
    __asm__ volatile("dsb\n isb");
    semihosting_exit(main() == 0);
    for (;;) {}
}

static void default_handler(void) { semihosting_exit(0); for (;;) {} }

__attribute__((section(".isr_vector"), used)) static const void *vectors[16] = {
    &_estack, (const void *)reset_handler, (const void *)default_handler, (const void *)default_handler,
    (const void *)default_handler, (const void *)default_handler, (const void *)default_handler, 0, 0, 0, 0,
    (const void *)default_handler, (const void *)default_handler, 0, (const void *)default_handler,
    (const void *)default_handler,
};
"""

LINKER = """/* MPS2-AN386 (Cortex-M4): 4 MiB code SRAM at 0 (the "flash"), 4 MiB data SRAM at 0x20000000. */
MEMORY {
    FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
    RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M
}
_estack = ORIGIN(RAM) + LENGTH(RAM);
SECTIONS {
    .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
    .text : { *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
    .ARM.exidx : { *(.ARM.exidx*) } > FLASH
    _sidata = LOADADDR(.data);
    .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
    .bss : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
}
"""


# --------------------------------------------------------------------------- building and running the generated code

M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def build_host(out_dir: str | Path, compiler: str = "gcc", optimisation: str = "-O2") -> Path:
    """Compile the harness for this machine (``-Wall -Wextra -Werror -std=c99``); returns its path.
    RuntimeError with the compiler's messages if it fails."""
    import subprocess

    out = Path(out_dir)
    binary = out / "harness"
    done = subprocess.run([compiler, optimisation, *WARNINGS, "-o", str(binary), str(out / "scnn_harness.c"),
                           str(out / "scnn_model.c")], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{compiler} failed on {out}:\n{done.stderr}")
    return binary


def build_cortex_m4(out_dir: str | Path, compiler: str = "arm-none-eabi-gcc") -> dict:
    """Cross-compile the harness (semihosting) and the library alone for a Cortex-M4F.

    Returns {"elf": path, "library": {"text", "data", "bss"}, "harness": {...}} from ``arm-none-eabi-size``
    (bytes). Flash of the library = text + data; its RAM is the caller's ``scnn_state_t`` (see the header).
    """
    import subprocess

    out = Path(out_dir)
    elf, library = out / "harness-m4.elf", out / "scnn_model-m4.o"
    common = [compiler, *M4_FLAGS, "-O2", *WARNINGS, "-ffunction-sections", "-fdata-sections"]
    for command in ([*common, "-DSCNN_SEMIHOSTING", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                     "-Wl,--gc-sections", "-T", str(out / "cortex-m4" / "link.ld"), "-o", str(elf),
                     str(out / "scnn_harness.c"), str(out / "scnn_model.c"), str(out / "cortex-m4" / "startup.c")],
                    [*common, "-c", "-o", str(library), str(out / "scnn_model.c")]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{compiler} failed on {out}:\n{done.stderr}")
    sizes = subprocess.run([compiler.replace("gcc", "size"), str(library), str(elf)], capture_output=True,
                           text=True, check=True).stdout.splitlines()[1:]
    parsed = [dict(zip(("text", "data", "bss"), map(int, line.split()[:3]))) for line in sizes]
    return {"elf": elf, "library": parsed[0], "harness": parsed[1]}


def run_qemu(elf: str | Path, timeout: float = 300) -> tuple[int, str]:
    """Run a semihosting Cortex-M4 ELF on qemu's MPS2-AN386 board; returns (exit status, its output)."""
    import subprocess

    done = subprocess.run(["qemu-system-arm", "-machine", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
                           "-monitor", "none", "-serial", "none", "-semihosting-config", "enable=on,target=native",
                           "-kernel", str(elf)], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def parse_harness_output(text: str, vectors: bool = False) -> list[tuple[int, list[int], list[int]]]:
    """(prediction, logits, spike counts) of each result line ``pred L.. | S..`` the harness printed: those of
    the input file (vectors=False) or those of the embedded test vectors (``vector N: ...``, vectors=True)."""
    rows = []
    for line in text.splitlines():
        if "|" not in line or (":" in line) != vectors:
            continue
        head, counts = line.split("|")
        numbers = [int(v) for v in head.split(":")[-1].split()]
        rows.append((numbers[0], numbers[1:], [int(v) for v in counts.split()]))
    return rows
