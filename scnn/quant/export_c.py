"""C99 integer inference from an integer artefact (docs/integer_format.md): :func:`export_c`.

The generated folder is self-contained and needs nothing but a C99 compiler:

    scnn_model.h      the API, the model's sizes and the memory it needs (documented in the header)
    scnn_model.c      weights (const int8_t), biases (const int32_t), the integer neurons, classify and step
    scnn_vectors.h    the artefact's test vectors (input codes, logits, spike counts, membrane traces)
    scnn_harness.c    checks the test vectors; on a host also runs int8 codes from a file
    cortex-m4/        startup code and linker script for an MPS2 Cortex-M4 board (qemu, semihosting)
    Makefile          host and Cortex-M4 builds

What the C code does is what :func:`scnn.quant.integer.run_integer` does, in the same order, in int32
(the export refuses a model whose worst-case widths, :func:`scnn.quant.integer.integer_widths`, need
more): no dynamic memory, no floating point except ``scnn_quantize_input`` (and the normaliser).
Each layer's code is specialised (literal sizes, known trip counts, ``restrict``) and written by one
function per synapse kind and per neuron type (:mod:`scnn.quant.c_layers`, which also says where the
time goes and how a new neuron is added). The first layer's current is computed once per sample (its
input is static); a spike-fed fully connected layer adds only the weight rows of the active inputs
(weights stored transposed, ``[inputs][outputs]``, so a row is contiguous) from a list of active
neurons its predecessor writes while it updates.

A sequence-input artefact (``input_kind`` "sequence", the streaming presets) gets the frame-by-frame API
instead of ``scnn_begin``/``scnn_step``: ``scnn_reset(state)`` then ``scnn_step_frame(state, frame)`` per frame
(int8 codes ``[C][F]``, column t of the ``[C][F][W]`` input), which returns that frame's readout (the test
vectors' ``frame_logits``, checked by the harness); ``scnn_classify`` runs the W frames of a whole input.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from scnn.io import write_text
from scnn.quant.c_layers import COMMON, NEURONS, SYNAPSES, LayerPlan, c_array, synapse_call
from scnn.quant.integer import integer_widths, load_integer, load_test_vectors, vectors_path

FILES = ("scnn_model.h", "scnn_model.c", "scnn_vectors.h", "scnn_harness.c", "Makefile",
         "cortex-m4/startup.c", "cortex-m4/link.ld")


def _check_supported(description: dict, arrays: dict) -> list[dict]:
    """Layer geometry for the C code; ValueError naming the layer for anything the C code does not implement."""
    kind = description.get("input_kind", "static")
    if kind not in ("static", "sequence"):
        raise ValueError(f"export-c: input_kind {kind!r} is not supported: the C code runs 'static' (one input for "
                         "every step) and 'sequence' (frame t of the codes at step t) nets")
    if kind == "sequence" and description["num_steps"] != description["input_shape"][2]:
        raise ValueError(f"export-c: a sequence-input net takes one frame per step, but num_steps "
                         f"{description['num_steps']} != {description['input_shape'][2]} frames")
    if not description.get("spiking"):
        raise ValueError("export-c: only spiking artefacts are supported (this is the ReLU control CNN)")
    widths = description.get("widths") or integer_widths(description, arrays)
    layers, shape = [], tuple(description["input_shape"])  # (C, H, W) of the layer's input
    if kind == "sequence":  # each step sees one frame: the column codes[:, :, t] as [C, F, 1]
        shape = (shape[0], shape[1], 1)
    for index, entry in enumerate(description["layers"]):
        activation = entry["activation"]
        if activation["type"] not in NEURONS:
            raise ValueError(f"export-c: layer {index} has a {activation['type']!r} activation; the C code runs "
                             f"nets whose every layer is a spiking neuron of {sorted(NEURONS)}")
        if activation["bits"] > 16:
            raise ValueError(f"export-c: layer {index} has a {activation['bits']}-bit state; int16_t holds 16")
        width = widths[index]
        for key in ("acc_bits", "current_bits", "membrane_sum_bits", "logits_bits", "synaptic_sum_bits",
                    "adaptation_sum_bits", "rec_acc_bits", "rec_current_bits"):
            if width.get(key, 0) > 32:
                raise ValueError(f"export-c: layer {index} needs {width[key]}-bit {key[:-5]} values (int32 holds 32)")
        shift = activation["state_exponent"] - arrays[f"layer{index}.acc_exponent"]
        if shift.max() > 30:
            raise ValueError(f"export-c: layer {index} requantises by a right shift of {shift.max()} (> 30)")
        weight = arrays[f"layer{index}.weight"]
        out_channels, pool = weight.shape[0], entry["pool"]
        if activation["type"] == "rlif":
            recurrent = activation["recurrent"]
            if recurrent["type"] not in ("fc", "conv", "one_to_one"):
                raise ValueError(f"export-c: layer {index} has a {recurrent['type']!r} recurrent synapse; the C code "
                                 "runs all-to-all (fc, conv) and one-to-one recurrence")
            if recurrent["type"] != "one_to_one":
                rec_shift = activation["state_exponent"] - arrays[f"layer{index}.recurrent.acc_exponent"]
                if rec_shift.max() > 30:
                    raise ValueError(f"export-c: layer {index} requantises its recurrent current by a right shift "
                                     f"of {rec_shift.max()} (> 30)")
        if entry["type"] == "conv":
            kernel, padding = entry.get("kernel"), entry.get("padding", 0)
            if entry.get("stride", 1) != 1:
                raise ValueError(f"export-c: layer {index} convolution has stride {entry['stride']}; the C code runs "
                                 "stride-1 convolutions")
            ph, pw = (padding, padding) if isinstance(padding, int) else (int(padding[0]), int(padding[1]))
            if len(shape) != 3 or shape[0] != weight.shape[1]:
                raise ValueError(f"export-c: layer {index} convolution takes {weight.shape[1]} channels, gets {shape}")
            kh, kw = weight.shape[-2:]
            if kernel is not None and list(np.broadcast_to(kernel, (2,))) != [kh, kw]:
                raise ValueError(f"export-c: layer {index} says kernel {kernel}, its weights are {kh}x{kw}")
            conv_h, conv_w = shape[1] + 2 * ph - kh + 1, shape[2] + 2 * pw - kw + 1
            if conv_h < 1 or conv_w < 1:
                raise ValueError(f"export-c: layer {index} convolution ({kh}x{kw}, padding {padding}) is larger "
                                 f"than its input {shape}")
            out_h, out_w = (conv_h // pool, conv_w // pool) if pool else (conv_h, conv_w)
            layer = dict(type=0, in_c=shape[0], in_h=shape[1], in_w=shape[2], kh=int(kh), kw=int(kw), ph=ph, pw=pw,
                         pool=pool, out_c=out_channels,
                         out_h=out_h, out_w=out_w, inputs=int(np.prod(shape)))
            shape = (out_channels, out_h, out_w)
        else:
            inputs = int(np.prod(shape))
            if pool or inputs != weight.shape[1]:
                raise ValueError(f"export-c: layer {index} fully connected layer takes {weight.shape[1]} inputs, "
                                 f"gets {shape} (or pools)")
            layer = dict(type=1, in_c=inputs, in_h=1, in_w=1, kh=1, kw=1, ph=0, pw=0, pool=0, out_c=out_channels, out_h=1, out_w=1,
                         inputs=inputs)
            shape = (out_channels,)
        layer["neurons"] = layer["out_c"] * layer["out_h"] * layer["out_w"]
        recurrent = activation.get("recurrent") or {}
        if activation["type"] == "rlif" and recurrent.get("type") == "conv":
            rec_weight = arrays[f"layer{index}.recurrent.weight"]
            if rec_weight.ndim != 4:
                raise ValueError(f"export-c: layer {index} recurrent convolution has {rec_weight.ndim}-D weights "
                                 f"{rec_weight.shape}; a convolution's are [O, C, kh, kw]")
            padding = recurrent.get("padding", 0)
            ph, pw = (padding, padding) if isinstance(padding, int) else padding
            rec_shape = (rec_weight.shape[0], layer["out_h"] + 2 * ph - rec_weight.shape[2] + 1,
                         layer["out_w"] + 2 * pw - rec_weight.shape[3] + 1)
            if (rec_weight.shape[1], *rec_shape) != (layer["out_c"], layer["out_c"], layer["out_h"], layer["out_w"]) \
                    or recurrent.get("stride", 1) != 1:
                raise ValueError(f"export-c: layer {index} recurrent convolution maps its {layer['out_c']}x"
                                 f"{layer['out_h']}x{layer['out_w']} spikes ({rec_weight.shape[1]} channels in) to "
                                 f"{'x'.join(map(str, rec_shape))}; "
                                 "the C code runs stride-1 recurrent convolutions that keep the map's shape")
        layers.append(layer)
    return layers


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
    header, model_c, weight_bytes, state_bytes = _generate(description, arrays, layers)
    write_text(out / "scnn_model.h", header)
    write_text(out / "scnn_model.c", model_c)
    write_text(out / "scnn_vectors.h", _vectors_header(description, layers, vectors))
    write_text(out / "scnn_harness.c", HARNESS)
    write_text(out / "Makefile", MAKEFILE)
    write_text(out / "cortex-m4" / "startup.c", STARTUP)
    write_text(out / "cortex-m4" / "link.ld", LINKER)
    return {"files": list(FILES), "state_bytes": state_bytes, "weight_bytes": weight_bytes,
            "vectors": 0 if vectors is None else int(len(vectors["input_codes"]))}


def _plans(description: dict, arrays: dict, layers: list[dict]) -> list[LayerPlan]:
    """One :class:`LayerPlan` per layer: where its neurons live, what feeds it, the C types of its buffers."""
    widths = description.get("widths") or integer_widths(description, arrays)
    membrane_type = "int8_t" if max(e["activation"]["bits"] for e in description["layers"]) <= 8 else "int16_t"
    plans, offset = [], 0
    for index, (entry, geometry) in enumerate(zip(description["layers"], layers)):
        following = description["layers"][index + 1] if index + 1 < len(layers) else None
        # the first layer's current is stored for the whole sample: int16 when its worst case fits
        cur_type = ("int16_t" if widths[0]["current_bits"] <= 16 else "int32_t") if index == 0 else "int32_t"
        plans.append(LayerPlan(index, entry, arrays, geometry, offset, "codes" if index == 0 else "spikes",
                               following is not None and following["type"] == "fc", cur_type, membrane_type,
                               widths[index]))
        offset += geometry["neurons"]
    return plans


def _generate(description: dict, arrays: dict, layers: list[dict]) -> tuple[str, str, int, int]:
    """(scnn_model.h, scnn_model.c, weight bytes, state bytes) of the net."""
    plans = _plans(description, arrays, layers)
    synapses = [SYNAPSES[(plan.entry["type"], plan.input_kind)](plan) for plan in plans]
    neurons = [NEURONS[plan.entry["activation"]["type"]](plan) for plan in plans]
    counts = [plan.geometry["neurons"] for plan in plans]
    total, classes = sum(counts), counts[-1]
    hidden = max(counts[1:], default=1)
    listed = max([p.geometry["neurons"] for p in plans if p.builds_list] or [1])
    index_type = "uint16_t" if listed <= 0xFFFF else "uint32_t"
    fields = [(plans[0].cur_type, "current0", counts[0],
               "first layer's current, computed once per sample (static input)"),
              ("int32_t", "current", hidden, "current (accumulators, then requantised) of the hidden layer being updated"),
              (plans[0].membrane_type, "membrane", total, "saturated membranes U[t] of every layer (C,H,W within a layer)"),
              ("uint8_t", "spikes", total, "spikes S[t] of every layer (0/1)"),
              ("scnn_index_t", "active", listed, "indices of the active neurons of the layer just updated"),
              ("uint32_t", "n_active", 1, "length of active[]"),
              ("int32_t", "logits", classes, "readout so far, units 2**SCNN_LOGIT_EXPONENT"),
              ("uint32_t", "spike_counts", len(plans), "spikes so far per layer"),
              ("int32_t", "step", 1, "steps done")]
    sequence = description.get("input_kind", "static") == "sequence"
    if sequence:
        fields[0] = (plans[0].cur_type, "current0", counts[0], "first layer's current of the frame being stepped")
        fields.append(("int32_t", "readout", classes, "the last frame's readout (what scnn_step_frame returns)"))
    fields += [(ctype, name, count, f"layer {plan.index} neuron state")
               for plan, code in zip(plans, neurons) for ctype, name, count in code.fields]
    header, state_bytes = _header(description, arrays, plans, fields, index_type)

    parts = ['#include "scnn_model.h"\n\n/* Generated by `scnn export-c`; see scnn_model.h. */\n']
    parts.append("const uint32_t scnn_layer_offset[SCNN_NUM_LAYERS] = {"
                 + ", ".join(str(p.offset) for p in plans) + "};\n")
    parts.append("const uint32_t scnn_layer_neurons[SCNN_NUM_LAYERS] = {" + ", ".join(map(str, counts)) + "};\n\n")
    for plan, synapse, neuron in zip(plans, synapses, neurons):
        parts.append(f"/* ---- layer {plan.index} constants */\n" + synapse.constants + neuron.constants)
    normalizer = description.get("normalizer")
    if normalizer and normalizer["enabled"]:
        parts.append(_float_array("norm_mean", arrays["input.norm_mean"]))
        parts.append(_float_array("norm_std", arrays["input.norm_std"]))
    parts.append(f"#define SCNN_NORM_ENABLED {1 if normalizer and normalizer['enabled'] else 0}\n")
    parts.append(f"#define SCNN_INPUT_EXPONENT {description['input']['exponent']}\n")
    parts.append(f"#define SCNN_INPUT_BITS {description['input']['bits']}\n")
    parts.append(COMMON)
    for synapse, neuron in zip(synapses, neurons):
        parts.append(synapse.function + neuron.function)
    resets = "".join(code.reset for code in neurons)
    steps = []
    for plan in plans:
        if plan.index:
            steps.append("    " + synapse_call(plan, plans[plan.index - 1], "state->current"))
            steps.append(f"    state->spike_counts[{plan.index}] += neuron{plan.index}(state, state->current);")
        else:
            steps.append("    state->spike_counts[0] += neuron0(state, state->current0);")
    last = plans[-1]
    readout = "membrane" if description["readout"] == "membrane" else "spikes"
    engine = ENGINE_SEQUENCE if sequence else ENGINE_STATIC
    parts.append(ENGINE_RESET.replace("@RESETS@", resets))
    parts.append(ENGINE + engine.replace("@BEGIN@", "    " + synapse_call(plans[0], None, "state->current0",
                                                                             "frame" if sequence else "codes"))
                 .replace("@STEPS@", "\n".join(steps)).replace("@READOUT@", f"state->{readout}[{last.offset}u + c]"))
    return header, "".join(parts), sum(code.weight_bytes for code in synapses + neurons), state_bytes


def _header(description: dict, arrays: dict, plans: list[LayerPlan], fields: list[tuple], index_type: str
            ) -> tuple[str, int]:
    """scnn_model.h and sizeof(scnn_state_t): the members are declared widest first, so there is no padding
    but the tail up to a multiple of 4 (the harness prints the compiler's sizeof; the tests compare)."""
    sizes = {"int32_t": 4, "uint32_t": 4, "int16_t": 2, "uint16_t": 2, "int8_t": 1, "uint8_t": 1,
             "scnn_index_t": 2 if index_type == "uint16_t" else 4}
    fields = sorted(fields, key=lambda f: -sizes[f[0]])  # stable: the listed order within one width
    state_bytes = sum(sizes[ctype] * count for ctype, _, count, _ in fields)
    state_bytes += -state_bytes % 4
    members = "\n".join(f"    {ctype} {name}{f'[{count}]' if name not in ('n_active', 'step') else ''};"
                        f"{' ' * max(1, 38 - len(ctype) - len(name) - len(str(count)))}/* {what} */"
                        for ctype, name, count, what in fields)
    counts = [plan.geometry["neurons"] for plan in plans]
    classes = counts[-1]
    c, h, w = description["input_shape"]
    stack = max(4 * (p.geometry["out_w"] * ((p.geometry["pool"] or 1) + 1)) if p.geometry["type"] == 0  # acc, best
                else 2 * p.geometry["out_c"] * (p.input_kind == "spikes") for p in plans)  # int16 block
    stack = max([stack] + [4 * p.geometry["neurons"] for p in plans  # an all-to-all recurrent layer's int32 sums
                           if p.entry["activation"]["type"] == "rlif"
                           and p.entry["activation"]["recurrent"]["type"] in ("fc", "conv")])
    sequence = description.get("input_kind", "static") == "sequence"
    frame = c * h if sequence else 0
    normalizer = description.get("normalizer")
    rows = len(arrays["input.norm_mean"]) if normalizer else 0
    shape = " -> ".join(f"{'conv' if p.geometry['type'] == 0 else 'fc'} "
                        f"{p.geometry['out_c']}x{p.geometry['out_h']}x{p.geometry['out_w']}" for p in plans)
    memory = textwrap.fill(
        "Memory: no dynamic allocation. Flash: the weights and biases in scnn_model.c (const). RAM: one "
        f"scnn_state_t per concurrent inference, sizeof(scnn_state_t) = {state_bytes} bytes here ("
        + ", ".join(f"{name} {ctype} x {count}" for ctype, name, count, _ in fields)
        + (f"), plus the caller's int8 frame ({frame} bytes; scnn_classify copies each frame of the whole input "
           f"into a stack buffer of that size)" if sequence else
           f"), plus the caller's int8 input ({int(np.prod(description['input_shape']))} bytes)")
        + " and the stack: the "
        f"largest local array is {stack} bytes (a conv's int32 accumulator rows, a fully connected layer's int16 "
        "partial sums), plus a few dozen bytes of frame. No floating point except scnn_quantize_input (and "
        "scnn_normalize_features).", width=110, subsequent_indent=" * ")
    if sequence:
        api = f"""/* Streaming, frame by frame: scnn_reset starts a new recording; scnn_step_frame takes one frame of int8 codes
 * [{c}][{h}] (column t of the [{c}][{h}][{w}] input), advances one step and returns that frame's readout
 * [SCNN_NUM_CLASSES] (the last layer's {description['readout']}, units 2**SCNN_LOGIT_EXPONENT; valid until the next
 * call); logits (their sum over frames) and spike counts accumulate in the state. */
void scnn_reset(scnn_state_t *state);
const int32_t *scnn_step_frame(scnn_state_t *state, const int8_t *frame);"""
    else:
        api = f"""/* Streaming: reset the state and compute the layer-0 current of int8 codes [{c}][{h}][{w}]. */
void scnn_reset(scnn_state_t *state);
void scnn_begin(scnn_state_t *state, const int8_t *codes);
/* Advance one time step (returns the number of steps done); logits and spike counts accumulate. */
int32_t scnn_step(scnn_state_t *state);"""
    text = f"""/* scnn integer model: generated by `scnn export-c` from a {description['format']} artefact.
 * The arithmetic is specified in scnn's docs/integer_format.md; this code is checked bit-exact against
 * scnn.quant.integer.run_integer (logits, spike counts, membrane traces).
 *
 * Net: input {c}x{h}x{w} int8 codes -> {shape}, {description['num_steps']} steps, readout {description['readout']}.
 *
 * {memory}
 */
#ifndef SCNN_MODEL_H
#define SCNN_MODEL_H

#include <stdint.h>

#define SCNN_INPUT_SIZE {c * h * w}
#define SCNN_NUM_CLASSES {classes}
#define SCNN_NUM_STEPS {description['num_steps']}
#define SCNN_SEQUENCE {int(sequence)}     /* 1: step t reads frame t, the column codes[:, :, t] */
#define SCNN_FRAME_SIZE {frame if sequence else c * h * w}
#define SCNN_NUM_LAYERS {len(plans)}
#define SCNN_TOTAL_NEURONS {sum(counts)}
#define SCNN_STATE_BYTES {state_bytes}
#define SCNN_NORM_ROWS {rows}
#define SCNN_LOGIT_EXPONENT {description['layers'][-1]['activation']['state_exponent'] if description['readout'] == 'membrane' else 0}

/* Offsets of each layer's neurons in membrane[] and spikes[] (C,H,W order within a layer). */
extern const uint32_t scnn_layer_offset[SCNN_NUM_LAYERS];
extern const uint32_t scnn_layer_neurons[SCNN_NUM_LAYERS];

typedef {index_type} scnn_index_t;   /* a neuron's index within its layer */

typedef struct {{
{members}
}} scnn_state_t;

{api}
/* One call: reset + SCNN_NUM_STEPS steps on codes [{c}][{h}][{w}]; copies the logits (may be NULL) and returns the
 * predicted class. */
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
             c_array("int8_t", "vector_codes", vectors["input_codes"].astype(np.int8)),
             c_array("int32_t", "vector_logits", vectors["logits"].astype(np.int32)),
             c_array("int32_t", "vector_predictions", vectors["predictions"].astype(np.int32)),
             c_array("uint32_t", "vector_spike_counts", vectors["spike_counts"].astype(np.uint32))]
    # traces [T, samples, neurons] -> one table [layers][T][samples][neurons] (narrow layers padded)
    stacked = np.stack([np.pad(trace, ((0, 0), (0, 0), (0, neurons - trace.shape[2]))) for _, trace in traces]) \
        if traces else np.zeros((0,))
    parts.append(c_array("int32_t", "vector_traces", stacked.astype(np.int32)))
    frame_logits = vectors.get("frame_logits")  # [T, N, classes]: sequence input, membrane readout
    parts.append(f"#define SCNN_FRAME_LOGITS {0 if frame_logits is None else 1}\n")
    if frame_logits is not None:
        parts.append(c_array("int32_t", "vector_frame_logits", frame_logits.astype(np.int32)))
    return "".join(parts)


ENGINE_RESET = r"""
void scnn_reset(scnn_state_t *state) {
    uint32_t n;
    for (n = 0; n < SCNN_TOTAL_NEURONS; ++n) { state->membrane[n] = 0; state->spikes[n] = 0; }
    for (n = 0; n < SCNN_NUM_CLASSES; ++n) state->logits[n] = 0;
    for (n = 0; n < SCNN_NUM_LAYERS; ++n) state->spike_counts[n] = 0;
    state->n_active = 0;
@RESETS@    state->step = 0;
}
"""

ENGINE_STATIC = r"""
void scnn_begin(scnn_state_t *state, const int8_t *codes) {
    scnn_reset(state);
@BEGIN@
}

int32_t scnn_step(scnn_state_t *state) {
    uint32_t c;
@STEPS@
    for (c = 0; c < SCNN_NUM_CLASSES; ++c) state->logits[c] += @READOUT@;
    return ++state->step;
}

int32_t scnn_classify(scnn_state_t *state, const int8_t *codes, int32_t *logits) {
    int32_t c;
    scnn_begin(state, codes);
    while (state->step < SCNN_NUM_STEPS) scnn_step(state);
    if (logits) for (c = 0; c < SCNN_NUM_CLASSES; ++c) logits[c] = state->logits[c];
    return scnn_argmax(state->logits);
}
"""

ENGINE_SEQUENCE = r"""
const int32_t *scnn_step_frame(scnn_state_t *state, const int8_t *frame) {
    uint32_t c;
@BEGIN@
@STEPS@
    for (c = 0; c < SCNN_NUM_CLASSES; ++c) {
        state->readout[c] = @READOUT@;
        state->logits[c] += state->readout[c];
    }
    ++state->step;
    return state->readout;
}

int32_t scnn_classify(scnn_state_t *state, const int8_t *codes, int32_t *logits) {
    int8_t frame[SCNN_FRAME_SIZE];
    uint32_t t, r;
    int32_t c;
    scnn_reset(state);
    for (t = 0; t < SCNN_NUM_STEPS; ++t) {   /* codes [C][F][W]: frame t is the column codes[:, :, t] */
        for (r = 0; r < SCNN_FRAME_SIZE; ++r) frame[r] = codes[r * SCNN_NUM_STEPS + t];
        scnn_step_frame(state, frame);
    }
    if (logits) for (c = 0; c < SCNN_NUM_CLASSES; ++c) logits[c] = state->logits[c];
    return scnn_argmax(state->logits);
}
"""

ENGINE = r"""
int32_t scnn_argmax(const int32_t *logits) {
    int32_t best = 0, c;
    for (c = 1; c < SCNN_NUM_CLASSES; ++c) if (logits[c] > logits[best]) best = c;
    return best;
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
 *     ./harness [CODES.bin [REPEATS]]   CODES.bin: N x SCNN_INPUT_SIZE int8 codes; prints one line per sample:
 *     "pred L0 .. L9 | S0 .. S(layers-1)"   (prediction, logits, spike counts per layer); REPEATS (default 1)
 *     classifies the file that many times (for timing), printing the results once
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
#include <stdlib.h>
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

#if SCNN_SEQUENCE && SCNN_NUM_VECTORS > 0  /* without test vectors nothing calls it (-Werror: unused) */
/* Frame t of test vector n through the streaming API; returns that frame's readout. */
static const int32_t *step_frame(int32_t n, int32_t t) {
    int8_t frame[SCNN_FRAME_SIZE];
    int32_t r;
    for (r = 0; r < SCNN_FRAME_SIZE; ++r) frame[r] = vector_codes[n * SCNN_INPUT_SIZE + r * SCNN_NUM_STEPS + t];
    return scnn_step_frame(&state, frame);
}
#endif

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
#if SCNN_SEQUENCE
        scnn_reset(&state);
#else
        scnn_begin(&state, &vector_codes[n * SCNN_INPUT_SIZE]);
#endif
        for (t = 0; t < SCNN_NUM_STEPS; ++t) {
#if SCNN_SEQUENCE
            step_frame(n, t);
#else
            scnn_step(&state);
#endif
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
#if SCNN_SEQUENCE && SCNN_FRAME_LOGITS
    for (n = 0; n < SCNN_NUM_VECTORS; ++n) {  /* the readout of every frame, as a streaming caller sees it */
        int32_t t, c, wrong = 0;
        scnn_reset(&state);
        for (t = 0; t < SCNN_NUM_STEPS; ++t) {
            const int32_t *readout = step_frame(n, t);
            for (c = 0; c < SCNN_NUM_CLASSES; ++c)
                wrong += readout[c] != vector_frame_logits[(t * SCNN_NUM_VECTORS + n) * SCNN_NUM_CLASSES + c];
        }
        if (wrong) { out("MISMATCH frame logits vector "); out_int(n); out("\n"); bad += 1; }
    }
    out("frame logits checked\n");
#endif
    out("vectors "); out_int(SCNN_NUM_VECTORS); out(" mismatches "); out_int(bad); out("\n");
    out("state bytes "); out_int((long)sizeof(scnn_state_t)); out("\n");
    return bad;
}

#ifdef SCNN_SEMIHOSTING
int main(void) { return check_vectors() ? 1 : 0; }
#else
int main(int argc, char **argv) {
    static int8_t codes[SCNN_INPUT_SIZE];
    int bad = check_vectors();
    long repeats = argc > 2 ? atol(argv[2]) : 1, r;
    if (argc > 1) {
        FILE *file = fopen(argv[1], "rb");
        if (!file) { fprintf(stderr, "harness: cannot open %s\n", argv[1]); return 2; }
        if (repeats < 1) { fprintf(stderr, "harness: REPEATS must be >= 1, got %s\n", argv[2]); return 2; }
        for (r = 0; r < repeats; ++r) {  /* timing: the same file again; the results are printed once */
            rewind(file);
            while (fread(codes, 1, SCNN_INPUT_SIZE, file) == SCNN_INPUT_SIZE) {
                int32_t prediction = scnn_classify(&state, codes, 0);
                if (r == 0) out_result(&state, prediction);
            }
        }
        fclose(file);
    }
    return bad ? 1 : 0;
}
#endif
"""

MAKEFILE = """# Host: make harness        Cortex-M4 (MPS2-AN386 under qemu): make m4 && make run-m4
CC ?= cc
CFLAGS ?= -O3 -std=c99 -Wall -Wextra -Werror
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


def build_host(out_dir: str | Path, compiler: str = "gcc", optimisation: str = "-O3", name: str = "harness") -> Path:
    """Compile the harness for this machine (``-Wall -Wextra -Werror -std=c99``, optimisation flags, -O3 by
    default: it vectorises the loops of the membrane update that -O2 leaves scalar); returns its path.
    RuntimeError with the compiler's messages if it fails."""
    import subprocess

    out = Path(out_dir)
    binary = out / name
    done = subprocess.run([compiler, *optimisation.split(), *WARNINGS, "-o", str(binary), str(out / "scnn_harness.c"),
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
