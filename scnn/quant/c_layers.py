"""The C code of one layer of an integer spiking net, for :func:`scnn.quant.export_c.export_c`.

A layer is a synapse followed by a neuron, and each is written by one function found in a registry:

    SYNAPSES[(layer type, input kind)](plan) -> CCode   "conv"/"fc" fed by int8 "codes" or 0/1 "spikes"
    NEURONS[activation type](plan) -> CCode              "lif", "alif", "synaptic", "rlif"

Every function is specialised for its layer: sizes, pooling and the per-channel constants' tables are
literals, loops have known trip counts and ``restrict`` pointers, so the compiler unrolls and vectorises
them. The contract between the two halves of a layer, and with the step function that chains them:

* synapse ``i`` writes the layer's current (state units, after requantisation) into ``cur[neurons]``:
  ``synapse{i}(INPUT, cur)`` where INPUT is the int8 codes (first layer: once per sample in ``scnn_begin``
  for a static input, one frame ``[C][F]`` per step in ``scnn_step_frame`` for a sequence input), the previous layer's spike map ``state->spikes + offset`` (a conv on spikes) or its
  list of active neurons ``state->active, state->n_active`` (a fully connected layer on spikes: it adds the
  weight row of each active input only; the weights are stored transposed, ``[inputs][outputs]``, so that
  row is contiguous).
* neuron ``i`` is ``uint32_t neuron{i}(scnn_state_t *state, const CUR_T *restrict cur)``: it updates its
  membranes ``state->membrane[offset ...]`` (what the readout and the test-vector traces read), writes
  its spikes ``state->spikes[offset ...]`` (0/1), lists the active ones (``collect``) when the next layer
  wants a list, and returns its spike count. Extra per-layer state (a synaptic current, an adaptive
  threshold, recurrent weights' input) goes into ``fields`` (struct members) and ``reset`` (zeroed in
  ``scnn_begin``).

The neurons: "lif" (:func:`_lif`), "alif" (:func:`_alif`: its threshold adaptation ``adaptationI[neurons]`` in
``fields``), "synaptic" (:func:`_synaptic`: ``synapticI[neurons]``) and "rlif" (:func:`_rlif`: all-to-all, its
recurrent weights stored transposed ``[from][to]`` in ``constants``, the rows of its own previous spikes
``spk[]`` added into a local int32 sum before the update; one-to-one, ``S[t-1] * V`` with V requantised at
export). A new neuron is one more function registered in :data:`NEURONS`; the loop over channels and neurons
they share is :func:`_neuron_function`. A convolution recurrence (same-size map) goes through :func:`_conv`.

Where the time goes (Model B INT8, gcc -O3, ``perf record`` with these functions kept out of line): the
5400 -> 128 layer's row sums a third, the first layer's LIF a quarter, the first layer's convolution (once
per sample) and listing its active neurons a fifth each; the 128 -> 10 layer and the rest 5 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class LayerPlan:
    """What the code of layer ``index`` needs to know. geometry: the dict of export_c._check_supported."""

    index: int
    entry: dict                  # the artefact's description of the layer (docs/integer_format.md)
    arrays: dict                 # the artefact's arrays
    geometry: dict               # type (0 conv, 1 fc), in_c, in_h, in_w, k, pool, out_c, out_h, out_w, inputs, neurons
    offset: int                  # first index of its neurons in state->membrane / state->spikes
    input_kind: str              # "codes" (first layer: int8, static) or "spikes" (0/1 of the previous layer)
    builds_list: bool            # the next layer is fully connected on spikes: list the active neurons
    cur_type: str                # C type of the current buffer this layer's neuron reads
    membrane_type: str           # C type of state->membrane
    width: dict = field(default_factory=dict)  # its row of the artefact's worst-case integer widths

    @property
    def prefix(self) -> str:
        return f"layer{self.index}"

    def per_channel(self, name: str) -> np.ndarray:
        values = np.asarray(self.arrays[f"{self.prefix}.{name}"]).reshape(-1)
        channels = self.geometry["out_c"]
        return np.broadcast_to(values, (channels,)) if values.size == 1 else values


@dataclass
class CCode:
    """C text of one synapse or neuron: ``constants`` (const tables, flash), ``function`` (its code),
    ``fields`` (extra scnn_state_t members as (C type, name, count)), ``reset`` (statements of scnn_begin
    that clear those fields), ``weight_bytes`` (flash of its weights and biases)."""

    constants: str = ""
    function: str = ""
    fields: list[tuple[str, str, int]] = field(default_factory=list)
    reset: str = ""
    weight_bytes: int = 0


def c_array(ctype: str, name: str, values, per_line: int = 24) -> str:
    """``static const ctype name[N] = {...};`` of the flattened values (one zero if empty)."""
    flat = np.asarray(values).reshape(-1).tolist()
    lines = [", ".join(str(v) for v in flat[i:i + per_line]) for i in range(0, len(flat), per_line)] or ["0"]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{max(len(flat), 1)}] = {{\n    {body}\n}};\n"


def _shift_table(plan: LayerPlan) -> str:
    """Per output channel requantisation shift s = state_exponent - acc_exponent (> 0: rounding right shift)."""
    shift = plan.entry["activation"]["state_exponent"] - plan.per_channel("acc_exponent")
    return c_array("int8_t", f"shift{plan.index}", np.asarray(shift, np.int64).astype(np.int8))


# --------------------------------------------------------------------------- synapses


def _conv(plan: LayerPlan) -> CCode:
    """Stride-1 kh x kw convolution, zero padding (ph rows above and below, pw columns left and right: the taps
    that fall outside the input are skipped) + max pooling of the accumulators, then requantisation; gathers
    over its input (int8 codes or 0/1 spikes as uint8). One row of accumulators at a time: each weight is
    added to a contiguous run of inputs (the loop the compiler vectorises)."""
    g, i = plan.geometry, plan.index
    weight = plan.arrays[f"{plan.prefix}.weight"].astype(np.int8)
    in_type = "int8_t" if plan.input_kind == "codes" else "uint8_t"
    pool, kh, kw, ph, pw = g["pool"] or 1, g["kh"], g["kw"], g["ph"], g["pw"]
    width = g["out_w"] * pool  # conv columns that reach the output (pooling drops the trailing ones)
    if ph or pw:  # signed indices: a tap may sit above/left of the input; only in-range rows and columns are read
        tap = f"""                        for (j = 0; j < {kw}; ++j) {{
                            const int32_t w = w{i}[((o * {g['in_c']} + c) * {kh} + i) * {kw} + j];
                            const int32_t row = y * {pool} + py + i - {ph}, shift = j - {pw};
                            const int32_t lo = shift < 0 ? -shift : 0, hi = {g['in_w']} - shift < {width} ? {g['in_w']} - shift : {width};
                            if (row < 0 || row >= {g['in_h']}) continue;
                            for (x = lo; x < hi; ++x) acc[x] += w * (int32_t)in[(c * {g['in_h']} + row) * {g['in_w']} + x + shift];
                        }}"""
        index_type = "int32_t"
    else:
        tap = f"""                        for (j = 0; j < {kw}u; ++j) {{
                            const int32_t w = w{i}[((o * {g['in_c']}u + c) * {kh}u + i) * {kw}u + j];
                            const {in_type} *restrict src = in + (c * {g['in_h']}u + y * {pool}u + py + i) * {g['in_w']}u + j;
                            for (x = 0; x < {width}u; ++x) acc[x] += w * (int32_t)src[x];
                        }}"""
        index_type = "uint32_t"
    u = "" if ph or pw else "u"
    function = f"""
/* Layer {i}: conv {g['in_c']}x{g['in_h']}x{g['in_w']} -> {g['out_c']}x{g['out_h']}x{g['out_w']} (kernel {kh}x{kw}, padding {ph}x{pw}, pool {g['pool']}). */
static void synapse{i}(const {in_type} *restrict in, {plan.cur_type} *restrict cur) {{
    int32_t acc[{width}], best[{g['out_w']}];
    {index_type} o, y, py, x, c, i, j;
    for (o = 0; o < {g['out_c']}{u}; ++o) {{
        const int32_t bias = b{i}[o], s = shift{i}[o];
        for (y = 0; y < {g['out_h']}{u}; ++y) {{
            for (x = 0; x < {g['out_w']}{u}; ++x) best[x] = INT32_MIN;
            for (py = 0; py < {pool}{u}; ++py) {{      /* conv row y * pool + py, max-pooled into best */
                for (x = 0; x < {width}{u}; ++x) acc[x] = bias;
                for (c = 0; c < {g['in_c']}{u}; ++c)
                    for (i = 0; i < {kh}{u}; ++i)
{tap}
                for (x = 0; x < {g['out_w']}{u}; ++x) {{
                    int32_t m = acc[x * {pool}{u}];
                    {index_type} px;
                    for (px = 1; px < {pool}{u}; ++px) m = acc[x * {pool}{u} + px] > m ? acc[x * {pool}{u} + px] : m;
                    best[x] = m > best[x] ? m : best[x];
                }}
            }}
            for (x = 0; x < {g['out_w']}{u}; ++x)
                cur[(o * {g['out_h']}{u} + y) * {g['out_w']}{u} + x] = ({plan.cur_type})requantise(best[x], s);
        }}
    }}
}}
"""
    constants = (c_array("int8_t", f"w{i}", weight) + c_array("int32_t", f"b{i}", plan.arrays[f"{plan.prefix}.bias"])
                 + _shift_table(plan))
    return CCode(constants, function, weight_bytes=weight.size + 4 * g["out_c"])


def _fc_codes(plan: LayerPlan) -> CCode:
    """Fully connected on the int8 codes (a first layer): one dot product per output, weights [O][inputs]."""
    g, i = plan.geometry, plan.index
    weight = plan.arrays[f"{plan.prefix}.weight"].astype(np.int8)
    function = f"""
/* Layer {i}: fully connected {g['inputs']} int8 codes -> {g['out_c']}. */
static void synapse{i}(const int8_t *restrict in, {plan.cur_type} *restrict cur) {{
    uint32_t o, n;
    for (o = 0; o < {g['out_c']}u; ++o) {{
        const int8_t *restrict w = w{i} + o * {g['inputs']}u;
        int32_t acc = b{i}[o];
        for (n = 0; n < {g['inputs']}u; ++n) acc += (int32_t)w[n] * (int32_t)in[n];
        cur[o] = ({plan.cur_type})requantise(acc, shift{i}[o]);
    }}
}}
"""
    constants = (c_array("int8_t", f"w{i}", weight) + c_array("int32_t", f"b{i}", plan.arrays[f"{plan.prefix}.bias"])
                 + _shift_table(plan))
    return CCode(constants, function, weight_bytes=weight.size + 4 * g["out_c"])


def _fc_spikes(plan: LayerPlan) -> CCode:
    """Fully connected on spikes, event-driven: the bias plus the weight row of each active input
    (weights stored transposed [inputs][outputs], so a row is contiguous).

    The rows are summed in int16 in blocks of at most 255 active inputs (|sum| <= 255 * 128 = 32640 fits
    int16 exactly, so no rounding or wrap can happen), and each block is added into the int32 accumulators:
    half the width, twice the SIMD lanes on a host, and exact.
    """
    g, i = plan.geometry, plan.index
    weight = np.ascontiguousarray(plan.arrays[f"{plan.prefix}.weight"].astype(np.int8).T)
    out = g["out_c"]
    function = f"""
/* Layer {i}: fully connected {g['inputs']} spikes -> {out}, adding the rows of the active inputs only. */
static void synapse{i}(const scnn_index_t *restrict active, uint32_t count, int32_t *restrict cur) {{
    int16_t block[{out}];
    uint32_t a = 0, o;
    for (o = 0; o < {out}u; ++o) cur[o] = b{i}[o];
    while (a < count) {{
        const uint32_t end = count - a > 255u ? a + 255u : count;   /* 255 x |int8| <= 32640: exact in int16 */
        for (o = 0; o < {out}u; ++o) block[o] = 0;
        for (; a + 4u <= end; a += 4u) {{  /* four rows at a time: a quarter of the loads and stores of block */
            const int8_t *restrict r0 = w{i} + (uint32_t)active[a] * {out}u, *restrict r1 = w{i} + (uint32_t)active[a + 1u] * {out}u;
            const int8_t *restrict r2 = w{i} + (uint32_t)active[a + 2u] * {out}u, *restrict r3 = w{i} + (uint32_t)active[a + 3u] * {out}u;
            for (o = 0; o < {out}u; ++o) block[o] = (int16_t)(block[o] + r0[o] + r1[o] + r2[o] + r3[o]);
        }}
        for (; a < end; ++a) {{
            const int8_t *restrict row = w{i} + (uint32_t)active[a] * {out}u;
            for (o = 0; o < {out}u; ++o) block[o] = (int16_t)(block[o] + row[o]);
        }}
        for (o = 0; o < {out}u; ++o) cur[o] += block[o];
    }}
    for (o = 0; o < {out}u; ++o) cur[o] = requantise(cur[o], shift{i}[o]);
}}
"""
    constants = (c_array("int8_t", f"w{i}", weight) + c_array("int32_t", f"b{i}", plan.arrays[f"{plan.prefix}.bias"])
                 + _shift_table(plan))
    return CCode(constants, function, weight_bytes=weight.size + 4 * out)


SYNAPSES: dict[tuple[str, str], Callable[[LayerPlan], CCode]] = {
    ("conv", "codes"): _conv, ("conv", "spikes"): _conv, ("fc", "codes"): _fc_codes, ("fc", "spikes"): _fc_spikes,
}


def synapse_call(plan: LayerPlan, previous: LayerPlan | None, target: str, source: str = "codes") -> str:
    """The C call of layer ``plan``'s synapse writing into ``target`` (a first layer reads ``source``)."""
    if plan.input_kind == "codes":
        return f"synapse{plan.index}({source}, {target});"
    if plan.entry["type"] == "fc":
        return f"synapse{plan.index}(state->active, state->n_active, {target});"
    return f"synapse{plan.index}(state->spikes + {previous.offset}u, {target});"


# --------------------------------------------------------------------------- neurons


def _lif(plan: LayerPlan) -> CCode:
    """The integer LIF of docs/integer_format.md: reset from the previous spike (not leaked), leak by shift
    (U - (U >> k)) or fixed multiplier, saturation once after the sum, strict ``>``."""
    g, i, activation = plan.geometry, plan.index, plan.entry["activation"]
    channels, plane = g["out_c"], g["out_h"] * g["out_w"]
    zero_reset, fixed = activation["reset"] == "zero", activation["leak"] == "fixed"
    leak_table = (c_array("int32_t", f"leakm{i}", plan.per_channel("leak_multiplier")) if fixed
                  else c_array("uint8_t", f"leakk{i}", plan.per_channel("leak_shift")))
    leak_const = f"m = leakm{i}[c]" if fixed else f"k = leakk{i}[c]"
    leaked = f"asr(kept * m, {activation['leak_bits']})" if fixed else "kept - asr(kept, k)"
    kept = "fired ? 0 : (int32_t)mem[n]" if zero_reset else "mem[n]"
    reset = "" if zero_reset else "            u -= fired * thr;                     /* subtract reset, not leaked */\n"
    # When the worst-case sum fits int16 (docs/integer_format.md, widths), saying so lets the compiler do the
    # update in 16-bit lanes (twice as many per vector); the value is the same.
    narrow = ("            u = (int16_t)u;                       /* |sum| < 2**15 (widths): exact */\n"
              if plan.width.get("membrane_sum_bits", 99) <= 16 else "")
    collect = (f"collect(spk, {g['neurons']}u, state->active, &state->n_active)" if plan.builds_list
               else f"collect(spk, {g['neurons']}u, 0, 0)")
    function = f"""
/* Layer {i}: integer LIF over {channels} x {plane} neurons (leak {activation['leak']}, reset {activation['reset']}). */
static uint32_t neuron{i}(scnn_state_t *state, const {plan.cur_type} *restrict cur) {{
    {plan.membrane_type} *restrict mem = state->membrane + {plan.offset}u;
    uint8_t *restrict spk = state->spikes + {plan.offset}u;
    uint32_t c, n;
    for (c = 0; c < {channels}u; ++c) {{
        const int32_t thr = thr{i}[c], {leak_const};
        for (n = c * {plane}u; n < (c + 1u) * {plane}u; ++n) {{
            const int32_t fired = spk[n], kept = {kept};
            int32_t u = {leaked} + (int32_t)cur[n];
{reset}{narrow}            u = u < {activation['state_min']} ? {activation['state_min']} : (u > {activation['state_max']} ? {activation['state_max']} : u);
            mem[n] = ({plan.membrane_type})u;
            spk[n] = (uint8_t)(u > thr);
        }}
    }}
    return {collect};
}}
"""
    constants = c_array("int32_t", f"thr{i}", plan.per_channel("threshold")) + leak_table
    return CCode(constants, function)


def _leak(plan: LayerPlan, shift_name: str, multiplier_name: str, table: str) -> tuple[str, str, str]:
    """(constant table, its per-channel declaration, a C expression leak(V) of a variable V) for one of the layer's
    leaks: V - (V >> k) ("shift") or (V * m) >> leak_bits ("fixed"), flooring shifts (docs/integer_format.md)."""
    activation, i = plan.entry["activation"], plan.index
    if activation["leak"] == "fixed":
        return (c_array("int32_t", f"{table}m{i}", plan.per_channel(multiplier_name)), f"{table}_m = {table}m{i}[c]",
                f"asr(V * {table}_m, {activation['leak_bits']})")
    return (c_array("uint8_t", f"{table}k{i}", plan.per_channel(shift_name)), f"{table}_k = {table}k{i}[c]",
            f"V - asr(V, {table}_k)")


def _neuron_function(plan: LayerPlan, what: str, declarations: list[str], body: str, before: str = "",
                     locals_: str = "") -> str:
    """A neuron function with the loop over channels and their neurons of every neuron type but "lif": per
    channel the ``declarations`` (const int32_t), per neuron ``body`` (reads ``fired`` = S[t-1], ``cur[n]``;
    sets ``u`` = U[t] saturated and ``b`` = the threshold spikes compare with)."""
    g, i = plan.geometry, plan.index
    plane = g["out_h"] * g["out_w"]
    collect = (f"collect(spk, {g['neurons']}u, state->active, &state->n_active)" if plan.builds_list
               else f"collect(spk, {g['neurons']}u, 0, 0)")
    return f"""
/* Layer {i}: integer {what} over {g['out_c']} x {plane} neurons. */
static uint32_t neuron{i}(scnn_state_t *state, const {plan.cur_type} *restrict cur) {{
    {plan.membrane_type} *restrict mem = state->membrane + {plan.offset}u;
    uint8_t *restrict spk = state->spikes + {plan.offset}u;
    uint32_t c, n;{locals_}
{before}    for (c = 0; c < {g['out_c']}u; ++c) {{
        const int32_t {', '.join(declarations)};
        for (n = c * {plane}u; n < (c + 1u) * {plane}u; ++n) {{
            const int32_t fired = spk[n];
            int32_t u, b;
{body}
            mem[n] = ({plan.membrane_type})u;
            spk[n] = (uint8_t)(u > b);
        }}
    }}
    return {collect};
}}
"""


def _clip(plan: LayerPlan, value: str, low: str | None = None) -> str:
    a = plan.entry["activation"]
    low = a["state_min"] if low is None else low
    return f"({value} < {low} ? {low} : ({value} > {a['state_max']} ? {a['state_max']} : {value}))"


def _fields(plan: LayerPlan, name: str) -> tuple[list[tuple[str, str, int]], str]:
    """One extra state variable per neuron (held in the membrane's type: it is saturated to the same range)."""
    field_name = f"{name}{plan.index}"
    return ([(plan.membrane_type, field_name, plan.geometry["neurons"])],
            f"    for (n = 0; n < {plan.geometry['neurons']}u; ++n) state->{field_name}[n] = 0;\n")


def _alif(plan: LayerPlan) -> CCode:
    """Adaptive LIF (threshold adaptation, Bellec et al. 2018) of docs/integer_format.md:
    Theta[t] = clip(leak_rho(Theta[t-1]) + S[t-1] * jump, 0, state_max), B = threshold + Theta[t];
    subtract reset U[t] = clip(leak(U[t-1]) + I - S[t-1] * B), zero reset clip(leak(U[t-1] (1 - S[t-1])) + I);
    S[t] = U[t] > B (strict)."""
    i, zero = plan.index, plan.entry["activation"]["reset"] == "zero"
    leak_table, leak_decl, leak = _leak(plan, "leak_shift", "leak_multiplier", "leak")
    rho_table, rho_decl, rho = _leak(plan, "rho_shift", "rho_multiplier", "rho")
    fields, reset = _fields(plan, "adaptation")
    kept = "(fired ? 0 : (int32_t)mem[n])" if zero else "(int32_t)mem[n]"
    theta = f"theta = {rho.replace('V', 'ada')} + fired * jump"
    sum_ = f"{leak.replace('V', 'kept')} + (int32_t)cur[n]" + ("" if zero else " - fired * b")
    body = f"""            const int32_t ada = state->adaptation{i}[n], kept = {kept};
            int32_t {theta};
            theta = {_clip(plan, 'theta', '0')};
            state->adaptation{i}[n] = ({plan.membrane_type})theta;
            b = thr + theta;
            u = {sum_};
            u = {_clip(plan, 'u')};"""
    function = _neuron_function(plan, f"adaptive LIF (reset {plan.entry['activation']['reset']})",
                                [f"thr = thr{i}[c]", f"jump = jump{i}[c]", leak_decl, rho_decl], body)
    constants = (c_array("int32_t", f"thr{i}", plan.per_channel("threshold"))
                 + c_array("int32_t", f"jump{i}", plan.per_channel("jump")) + leak_table + rho_table)
    return CCode(constants, function, fields, reset)


def _synaptic(plan: LayerPlan) -> CCode:
    """Second-order LIF of docs/integer_format.md: Syn[t] = clip(leak_alpha(Syn[t-1]) + I), sum = leak(U[t-1]) +
    Syn[t]; subtract reset U[t] = clip(sum - S[t-1] * threshold); zero reset U[t] = 0 if S[t-1] else clip(sum)."""
    i, zero = plan.index, plan.entry["activation"]["reset"] == "zero"
    leak_table, leak_decl, leak = _leak(plan, "leak_shift", "leak_multiplier", "leak")
    alpha_table, alpha_decl, alpha = _leak(plan, "alpha_shift", "alpha_multiplier", "alpha")
    fields, reset = _fields(plan, "synaptic")
    body = f"""            const int32_t old = state->synaptic{i}[n], kept = mem[n];
            int32_t syn = {alpha.replace('V', 'old')} + (int32_t)cur[n];
            syn = {_clip(plan, 'syn')};
            state->synaptic{i}[n] = ({plan.membrane_type})syn;
            b = thr;
            u = {leak.replace('V', 'kept')} + syn{'' if zero else ' - fired * thr'};
            u = {'fired ? 0 : ' if zero else ''}{_clip(plan, 'u')};"""
    function = _neuron_function(plan, f"synaptic (second-order) LIF (reset {plan.entry['activation']['reset']})",
                                [f"thr = thr{i}[c]", leak_decl, alpha_decl], body)
    constants = c_array("int32_t", f"thr{i}", plan.per_channel("threshold")) + leak_table + alpha_table
    return CCode(constants, function, fields, reset)


def _rlif(plan: LayerPlan) -> CCode:
    """Recurrent LIF of docs/integer_format.md: R = requantise(W_rec . S[t-1] + b_rec) (all-to-all, "fc": the
    weights stored transposed [from][to], the rows of the layer's own previous spikes added; "conv": a
    convolution of its own previous spike map, same size, via :func:`_conv`) or S[t-1] * V
    (one-to-one: V requantised at export, exact); sum = leak(U[t-1]) + I + R; subtract reset
    U[t] = clip(sum - S[t-1] * threshold); zero reset U[t] = 0 if S[t-1] else clip(sum)."""
    from scnn.quant.integer import shift_round

    g, i, activation = plan.geometry, plan.index, plan.entry["activation"]
    zero, neurons = activation["reset"] == "zero", g["neurons"]
    leak_table, leak_decl, leak = _leak(plan, "leak_shift", "leak_multiplier", "leak")
    prefix = f"{plan.prefix}.recurrent"
    shift = activation["state_exponent"] - np.asarray(plan.arrays[f"{prefix}.acc_exponent"], np.int64)
    if activation["recurrent"]["type"] == "conv":  # the layer's own spike map through a same-size convolution
        recurrent_plan = _recurrent_conv_plan(plan)
        code = _conv(recurrent_plan)
        constants, helper = code.constants, code.function
        locals_ = f"\n    int32_t rec[{neurons}];"
        before = f"    synapse{recurrent_plan.index}(spk, rec);   /* from S[t-1]: spk is overwritten below */\n"
        declarations, rec, weight_bytes = [], "rec[n]", code.weight_bytes
    elif activation["recurrent"]["type"] == "one_to_one":
        v = np.asarray(plan.arrays[f"{prefix}.v"], np.int64).reshape(-1)
        v = np.broadcast_to(v, (g["out_c"],)) if v.size == 1 else v
        constants = c_array("int32_t", f"recv{i}", shift_round(v, int(shift.reshape(-1)[0]), channel_axis=0))
        declarations, rec, before, locals_, weight_bytes = [f"recv = recv{i}[c]"], "fired * recv", "", "", 0
        helper = ""
    else:
        weight = np.ascontiguousarray(plan.arrays[f"{prefix}.weight"].astype(np.int8).T)  # [from][to]
        shift = np.broadcast_to(shift.reshape(-1), (neurons,))
        constants = (c_array("int8_t", f"wr{i}", weight) + c_array("int32_t", f"br{i}", plan.arrays[f"{prefix}.bias"])
                     + c_array("int8_t", f"shiftr{i}", shift.astype(np.int8)))
        locals_ = f"\n    int32_t rec[{neurons}];"
        before = f"""    for (n = 0; n < {neurons}u; ++n) rec[n] = br{i}[n];
    for (c = 0; c < {neurons}u; ++c)   /* the rows of the neurons that spiked at t-1 */
        if (spk[c]) {{
            const int8_t *restrict row = wr{i} + c * {neurons}u;
            for (n = 0; n < {neurons}u; ++n) rec[n] += row[n];
        }}
    for (n = 0; n < {neurons}u; ++n) rec[n] = requantise(rec[n], shiftr{i}[n]);
"""
        declarations, rec, weight_bytes, helper = [], "rec[n]", weight.size + 4 * neurons, ""
    body = f"""            const int32_t kept = mem[n];
            b = thr;
            u = {leak.replace('V', 'kept')} + (int32_t)cur[n] + {rec}{'' if zero else ' - fired * thr'};
            u = {'fired ? 0 : ' if zero else ''}{_clip(plan, 'u')};"""
    function = helper + _neuron_function(plan, f"recurrent LIF ({activation['recurrent']['type']}, reset "
                                                f"{activation['reset']})", [f"thr = thr{i}[c]", leak_decl, *declarations],
                                         body, before, locals_)
    constants = c_array("int32_t", f"thr{i}", plan.per_channel("threshold")) + leak_table + constants
    return CCode(constants, function, weight_bytes=weight_bytes)


@dataclass
class _RecurrentPlan(LayerPlan):
    """The recurrent convolution of an "rlif" layer, written by :func:`_conv` (arrays ``layerI.recurrent.*``,
    C names ``w{I}r``, ``synapse{I}r``)."""

    array_prefix: str = ""

    @property
    def prefix(self) -> str:
        return self.array_prefix


def _recurrent_conv_plan(plan: LayerPlan) -> LayerPlan:
    g, activation = plan.geometry, plan.entry["activation"]
    recurrent, prefix = activation["recurrent"], f"{plan.prefix}.recurrent"
    padding = recurrent.get("padding", 0)
    ph, pw = (padding, padding) if isinstance(padding, int) else (int(padding[0]), int(padding[1]))
    kh, kw = plan.arrays[f"{prefix}.weight"].shape[-2:]
    geometry = dict(type=0, in_c=g["out_c"], in_h=g["out_h"], in_w=g["out_w"], kh=int(kh), kw=int(kw), ph=ph, pw=pw,
                    pool=0, out_c=g["out_c"], out_h=g["out_h"], out_w=g["out_w"], inputs=g["neurons"],
                    neurons=g["neurons"])
    return _RecurrentPlan(f"{plan.index}r", {"activation": activation, "pool": 0}, plan.arrays, geometry, 0, "spikes",
                          False, "int32_t", plan.membrane_type, array_prefix=prefix)


NEURONS: dict[str, Callable[[LayerPlan], CCode]] = {"lif": _lif, "alif": _alif, "synaptic": _synaptic, "rlif": _rlif}


# --------------------------------------------------------------------------- shared helpers (once per model)

COMMON = r"""
/* Flooring (arithmetic) right shift. >> of a negative int is implementation-defined in C; where the compiler's
 * >> already floors (gcc, clang, arm-none-eabi-gcc), the test below is a constant and the shift is one
 * instruction, elsewhere the portable form runs. */
static inline int32_t asr(int32_t x, int32_t k) {
    return (((int32_t)-1 >> 1) == -1) ? x >> k : (x >= 0 ? x >> k : ~(~x >> k));
}

/* round_half_even(acc / 2**s) for s > 0; exact acc * 2**-s for s <= 0 (widths checked at export). The
 * remainder acc & (2**s - 1) is the flooring one: int32_t is two's complement by definition (C99 7.18.1.1). */
static inline int32_t requantise(int32_t acc, int32_t s) {
    int32_t q, r, half;
    if (s <= 0) return acc * ((int32_t)1 << -s);
    q = asr(acc, s);
    r = acc & (((int32_t)1 << s) - 1);
    half = (int32_t)1 << (s - 1);
    return q + (r > half || (r == half && (q & 1)));
}

/* Spike count of spikes[0..n) (0/1); with a list, also writes the indices of the active ones (branch-free). */
static uint32_t collect(const uint8_t *restrict spikes, uint32_t n, scnn_index_t *restrict active, uint32_t *count) {
    uint32_t i, total = 0;
    if (!active) {
        for (i = 0; i < n; ++i) total += spikes[i];
        return total;
    }
    for (i = 0; i < n; ++i) {  /* no branch: a test per word mispredicts on sparse random spikes (slower) */
        active[total] = (scnn_index_t)i;
        total += spikes[i];
    }
    *count = total;
    return total;
}
"""
