"""NIR (the Neuromorphic Intermediate Representation, package ``nir``) export and import of spec nets and
the streaming presets, for every neuron scnn has: :func:`export_nir`, :func:`import_nir`,
:func:`export_nir_checkpoint`.

Time: NIR neurons are continuous-time, ``tau dv/dt = (v_leak - v) + r I``. One scnn step is
``DT`` = 1e-4 s (snntorch's NIR convention, so ``snntorch.import_nir.import_from_nir`` reads the
graph back); forward Euler over one step gives ``v <- (1 - DT/tau) v + (DT r / tau) I``, so a decay
``d`` per step (beta of the membrane, alpha of a synaptic current) is written as

    tau = DT / (1 - d),   r = tau / DT (the input enters unscaled),   v_leak = 0

and read back as ``d = 1 - DT / tau``. An edge that closes a cycle (a reset or recurrent edge)
carries the previous step's output, as in snntorch's RLeaky (``W_rec S[t-1]``).

How each neuron is written (layer ``i``; every node holds one value per neuron), by the writer registered
for its class with :func:`register_nir_neuron`, which reads it through the neuron interface only:

* Leaky, zero reset: one ``LIF`` node ``lif{i}`` (``v_threshold``, ``v_reset`` = 0). scnn's delayed
  zero reset ``U[t] = beta (1 - S[t-1]) U[t-1] + I[t]`` and NIR's reset at once give the same
  membrane and spikes, so snntorch imports it exactly.
* Subtract reset (Leaky, RLeaky, Synaptic): NIR's spiking nodes all reset to ``v_reset``, but the
  subtract reset ``- U_thr S[t-1]`` is linear in the previous spike, so it is exact as a leaky
  integrator and a threshold with a feedback edge::

      source -> LI membrane{i} -> Threshold spike{i} -> (next layer)
                    ^  ^------------ Scale reset{i} = -U_thr <--|
                    |--------------- recurrent{i} (RLeaky) <----|

  RLeaky's recurrent weights are the edge ``recurrent{i}``: ``Affine`` (all-to-all dense, with its
  bias), ``Conv2d`` (all-to-all on conv maps, padded) or ``Scale`` (one-to-one V). Synaptic puts an
  ``LI synaptic{i}`` (tau_syn from alpha) before the membrane. A membrane readout (scnn's default)
  is the ``Output`` fed by the readout's ``LI`` node: its state is scnn's membrane U[t].
  snntorch's importer has no LI/Threshold/Scale nodes, so these graphs are read by scnn's importer
  (and tools that implement those primitives), not by ``snntorch.import_from_nir``.

What NIR cannot express, refused naming the layer:

* RLeaky and Synaptic with the zero reset: scnn's neurons are snntorch's with ``reset_delay=True``,
  whose zero reset clears the whole membrane of the step after a spike, that step's input included
  (``U[t] = (1 - S[t-1]) (beta U[t-1] + ...)``). NIR's LIF/CubaLIF reset at once and keep that
  input (snntorch's own importer builds them with ``reset_delay=False``): on 25 steps of uniform random
  input to 30 neurons, 24 % of RLeaky's and 40 % of Synaptic's spikes differ; tests/test_nir_neurons.py
  shows the difference on FSDD recordings. A one-step refractory hold is a product of spike and input,
  which no NIR node computes.
* ALIF (adaptive threshold, Bellec et al. 2018): the threshold ``U_thr + b A[t]`` moves with the
  adaptation state, and the reset is a product of two signals (subtract: ``S[t-1] (U_thr + b A[t])``;
  zero: a reset triggered by ``U - b A > U_thr``, not by the node's own ``v > v_threshold``). NIR's
  thresholds are constants and its only products are the resets inside LIF/CubaLIF/IF, triggered by
  their own membrane, so no NIR graph computes ALIF exactly.
* Max pooling (NIR has sum and average pooling only), a membrane readout of a zero-reset Leaky
  (NIR's LIF state is the membrane after the reset), rate encoding (random), non-spiking nets.

Inputs: direct encoding (the static ``[C, H, W]`` map at every step), frames (frame t, ``[C, F, 1]``, at
step t: the streaming presets and spec nets with ``encoding="frames"``) and sequence inputs
(``input_kind="sequence"``: the caller's input of each step).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from torch import nn

from scnn.neurons.alif import ALIF
from scnn.neurons.leaky import LIF
from scnn.neurons.rleaky import RLeaky
from scnn.neurons.synaptic import Synaptic

DT = 1e-4  # seconds per scnn time step in exported graphs (snntorch's NIR convention)
TIME_CONVENTION = ("forward Euler, one step = dt seconds; an edge that closes a cycle (reset, recurrent) "
                   "carries the previous step's output")


def _nir():
    try:
        import nir
    except ImportError as error:  # pinned in requirements.txt
        raise ValueError("NIR export and import need the package 'nir' (pip install -r requirements.txt)") from error
    return nir


# --------------------------------------------------------------------------- export


def _tau(decay: np.ndarray, what: str) -> np.ndarray:
    """NIR time constant (s) of a per-step decay in [0, 1): tau = DT / (1 - decay)."""
    if np.any(decay >= 1.0):
        raise ValueError(f"NIR export: {what} has a decay of 1 (no leak, tau infinite); NIR's leaky nodes need "
                         "decay < 1")
    return (DT / (1.0 - decay)).astype(np.float32)


def _values(tensor, shape: tuple[int, ...], clamp: bool = False) -> np.ndarray:
    """A scalar or per-channel ``[C, 1, ...]`` parameter as one float64 value per neuron, shape ``shape``."""
    tensor = torch.as_tensor(tensor).detach().double().cpu()
    if clamp:
        tensor = tensor.clamp(0, 1)
    return np.broadcast_to(tensor.numpy(), shape).copy()


class _Graph:
    """Nodes and edges under construction."""

    def __init__(self):
        self.nodes, self.edges = {}, []

    def add(self, name: str, node, *sources: str) -> str:
        self.nodes[name] = node
        self.edges.extend((source, name) for source in sources)
        return name


def _li(nir, decay: np.ndarray, what: str):
    tau = _tau(decay, what)
    return nir.LI(tau=tau, r=(tau.astype(np.float64) / DT).astype(np.float32), v_leak=np.zeros_like(tau))


def _recurrent_node(nir, index: int, recurrent: nn.Module, shape: tuple[int, ...]):
    """RLeaky's recurrent weights as a NIR node (Affine, Conv2d or Scale)."""
    if isinstance(recurrent, nn.Linear):
        return nir.Affine(weight=recurrent.weight.detach().cpu().numpy().astype(np.float32),
                          bias=recurrent.bias.detach().cpu().numpy().astype(np.float32))
    if isinstance(recurrent, nn.Conv2d):
        return nir.Conv2d(input_shape=shape[1:], weight=recurrent.weight.detach().cpu().numpy().astype(np.float32),
                          stride=1, padding=tuple(recurrent.padding), dilation=1, groups=1,
                          bias=recurrent.bias.detach().cpu().numpy().astype(np.float32))
    if hasattr(recurrent, "V"):  # snntorch's RecurrentOneToOne: S * V
        return nir.Scale(scale=_values(recurrent.V, shape).astype(np.float32))
    raise ValueError(f"NIR export: layer {index} RLeaky has recurrent weights {type(recurrent).__name__}")


def _square_kernel(weight: np.ndarray, padding: tuple[int, int], index: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A (kh, kw) kernel as the same convolution with a square (K, K) kernel, K = max(kh, kw): centred, zero
    around, the padding grown by the offset. Why: nir 1.0.8's Conv2d infers its output shape from the first
    kernel dimension only, so a (5, 1) kernel gets a wrong output type and ``nir.read`` refuses the file."""
    kh, kw = weight.shape[2:]
    size = max(kh, kw)
    if (size - kh) % 2 or (size - kw) % 2:
        raise ValueError(f"NIR export: layer {index} kernel {kh}x{kw} cannot be centred in a square kernel (nir "
                         "1.0.8 infers non-square kernels' shapes wrongly)")
    dh, dw = (size - kh) // 2, (size - kw) // 2
    square = np.zeros((*weight.shape[:2], size, size), weight.dtype)
    square[:, :, dh:dh + kh, dw:dw + kw] = weight
    return square, (padding[0] + dh, padding[1] + dw)


def _unsquare_kernel(weight: np.ndarray, padding) -> tuple[np.ndarray, tuple[int, int]]:
    """The inverse of :func:`_square_kernel`: a square kernel whose padding only makes up for zeros around a
    centred (kh, kw) core, as that core with the padding taken off; anything else is returned as it is."""
    ph, pw = (int(p) for p in np.broadcast_to(np.asarray(padding), (2,)))
    size_h, size_w = weight.shape[2:]
    if (ph or pw) and 2 * ph < size_h and 2 * pw < size_w:
        core = weight[:, :, ph:size_h - ph, pw:size_w - pw]
        if np.count_nonzero(weight) == np.count_nonzero(core):
            return core, (0, 0)
    return weight, (ph, pw)


NIR_NEURONS: dict[type, Callable] = {}


def register_nir_neuron(neuron_class: type) -> Callable[[Callable], Callable]:
    """Decorator: the function that writes the NIR nodes of ``neuron_class`` (and of its subclasses),
    ``writer(graph, index, neuron, shape, source, membrane_out) -> str``: it adds layer ``index``'s neuron fed by
    node ``source`` (``shape``: one value per neuron) and returns the node the next layer (or the graph's
    Output) reads, its spikes or, when ``membrane_out``, its membrane; ValueError naming the layer if NIR cannot
    express the neuron. Writers read the neuron through the neuron interface only (``neuron_parameters()``,
    ``reset_mechanism``, ``recurrent_synapses()``)."""

    def register(writer: Callable) -> Callable:
        NIR_NEURONS[neuron_class] = writer
        return writer

    return register


def _neuron_nodes(graph: _Graph, index: int, neuron: nn.Module, shape: tuple[int, ...], source: str,
                  membrane_out: bool) -> str:
    """Layer ``index``'s neuron by the writer registered for its class (or nearest base class); ValueError naming
    the layer for a neuron without one."""
    writer = next((NIR_NEURONS[cls] for cls in type(neuron).__mro__ if cls in NIR_NEURONS), None)
    if writer is None:
        raise ValueError(f"NIR export: layer {index} neuron {type(neuron).__name__} has no NIR form (Leaky, RLeaky, "
                         "Synaptic; a neuron registers its writer with register_nir_neuron in scnn.interop.nir)")
    return writer(graph, index, neuron, shape, source, membrane_out)


@register_nir_neuron(ALIF)
def _alif_nodes(graph: _Graph, index: int, neuron: nn.Module, shape: tuple[int, ...], source: str,
                membrane_out: bool) -> str:
    raise ValueError(f"NIR export: layer {index} is an ALIF (adaptive threshold); NIR has no adaptive "
                     "threshold and no node that computes one exactly (its thresholds are constants, its "
                     "only spike-state products are the LIF resets), so the graph cannot be written")


@register_nir_neuron(LIF)
def _leaky_nodes(graph: _Graph, index: int, neuron: nn.Module, shape: tuple[int, ...], source: str,
                 membrane_out: bool) -> str:
    """Leaky: one LIF node (zero reset) or the subtract-reset form."""
    if neuron.reset_mechanism != "zero":
        return _subtract_reset_nodes(graph, index, neuron, shape, source, membrane_out)
    if membrane_out:
        raise ValueError(f"NIR export: layer {index} is read out by its membrane (readout='membrane') with "
                         "the zero reset; NIR's LIF state holds the membrane after the reset, so the logits "
                         "would differ: use the subtract reset or readout='spike_count' to export")
    nir = _nir()
    parameters = neuron.neuron_parameters()
    beta = _values(parameters["beta"], shape, clamp=True)
    threshold = _values(parameters["threshold"], shape).astype(np.float32)
    ones = np.ones(shape, np.float32)
    tau = _tau(beta, f"layer {index}")
    return graph.add(f"lif{index}", nir.LIF(tau=tau, r=(tau.astype(np.float64) / DT).astype(np.float32),
                                            v_leak=0 * ones, v_threshold=threshold, v_reset=0 * ones), source)


@register_nir_neuron(RLeaky)
def _rleaky_nodes(graph: _Graph, index: int, neuron: nn.Module, shape: tuple[int, ...], source: str,
                  membrane_out: bool) -> str:
    """RLeaky: the subtract-reset form with its recurrent weights as an edge."""
    (recurrent,) = neuron.recurrent_synapses()
    return _subtract_reset_nodes(graph, index, neuron, shape, source, membrane_out, recurrent=recurrent)


@register_nir_neuron(Synaptic)
def _synaptic_nodes(graph: _Graph, index: int, neuron: nn.Module, shape: tuple[int, ...], source: str,
                    membrane_out: bool) -> str:
    """Synaptic: an LI synaptic current, then the subtract-reset form."""
    alpha = _values(neuron.neuron_parameters()["alpha"], shape, clamp=True)
    return _subtract_reset_nodes(graph, index, neuron, shape, source, membrane_out, alpha=alpha)


def _subtract_reset_nodes(graph: _Graph, index: int, neuron: nn.Module, shape: tuple[int, ...], source: str,
                          membrane_out: bool, alpha: np.ndarray | None = None,
                          recurrent: nn.Module | None = None) -> str:
    """source [-> LI synaptic{i}] -> LI membrane{i} -> Threshold spike{i}, with the Scale(-U_thr) reset edge and
    the recurrent edge (module docstring); ValueError naming the layer for a reset other than "subtract"."""
    nir = _nir()
    name, reset = type(neuron).__name__, neuron.reset_mechanism
    if reset == "zero":
        raise ValueError(f"NIR export: layer {index} {name} uses the zero reset, which in scnn (snntorch's "
                         "reset_delay=True) clears the membrane of the step after a spike, input included; "
                         "NIR's LIF/CubaLIF reset at once and keep that input, so spikes would differ "
                         "(train with reset_mechanism='subtract' to export)")
    if reset != "subtract":
        raise ValueError(f"NIR export: layer {index} {name} has reset {reset!r}; NIR takes 'subtract' or 'zero'")
    parameters = neuron.neuron_parameters()
    beta = _values(parameters["beta"], shape, clamp=True)
    threshold = _values(parameters["threshold"], shape).astype(np.float32)
    if alpha is not None:
        source = graph.add(f"synaptic{index}", _li(nir, alpha, f"layer {index} synaptic current (alpha)"), source)
    membrane = graph.add(f"membrane{index}", _li(nir, beta, f"layer {index} (beta)"), source)
    spike = graph.add(f"spike{index}", nir.Threshold(threshold=threshold), membrane)
    if recurrent is not None:  # before the reset: scnn adds W_rec S[t-1], then subtracts the reset
        graph.add(f"recurrent{index}", _recurrent_node(nir, index, recurrent, shape), spike)
        graph.edges.append((f"recurrent{index}", membrane))
    graph.add(f"reset{index}", nir.Scale(scale=-threshold), spike)
    graph.edges.append((f"reset{index}", membrane))
    return membrane if membrane_out else spike


def export_nir(model: nn.Module):
    """A ``nir.NIRGraph`` of a spiking spec net or streaming model (ValueError naming what NIR cannot express).

    The graph's Input is one step's input: the static ``[C, H, W]`` features for direct encoding (the same at
    every step), one frame ``[1, F, 1]`` per step for the streaming presets. Its Output is the classifier's
    spikes (readout "spike_count") or membrane (readout "membrane"); the logits are its sum over the
    ``num_steps`` steps (metadata)."""
    from scnn.models.spec_net import SpecNet
    from scnn.models.streaming import StreamingNet

    nir = _nir()
    if isinstance(model, StreamingNet):
        config = model.config
        shape = (1, config.input_shape[1], 1)  # one frame per step
        steps, readout, encoding = config.input_shape[2], config.readout, "frames"
        input_note = "frame t of the [1, F, W] features at step t: input [1, F, 1], W steps"
    elif isinstance(model, SpecNet):
        config = model.config
        if not config.spiking:
            raise ValueError("NIR export: the model is not spiking (ReLU control CNN); NIR graphs here hold "
                             "spiking neurons")
        # what one step sees and how many steps: input_shape and num_steps, or one frame per step
        shape, steps, readout = tuple(model.step_shape), model.num_steps, config.readout
        if config.input_kind == "sequence":
            encoding, input_note = "sequence", "one [C, H, W] input per step, given by the caller"
        elif config.encoding == "direct":
            encoding, input_note = "direct", "direct: the input is fed unchanged at every step"
        elif config.encoding == "frames":  # one frame per step: the input is one frame's, [C, F, 1]
            encoding = "frames"
            input_note = "frame t of the [C, F, W] features at step t: input [C, F, 1], as many steps as frames"
        else:
            raise ValueError(f"NIR export: encoding {config.encoding!r} is not part of a NIR graph (rate is random, "
                             "delta compares frames); a NIR graph takes the input of each step (direct, frames or "
                             "a given sequence)")
    else:
        raise ValueError(f"NIR export takes spec nets (Model A/B, spec strings) and streaming models, got "
                         f"{type(model).__name__}")
    if readout not in ("membrane", "spike_count"):
        raise ValueError(f"NIR export: unknown readout {readout!r}")
    model = model.eval()
    graph = _Graph()
    source = graph.add("input", nir.Input(input_type={"input": np.array(shape)}))
    last = len(model.blocks) - 1
    for index, block in enumerate(model.blocks):
        synapse = block.synapse
        flatten = isinstance(synapse, nn.Sequential)
        layer = synapse[-1] if flatten else synapse
        if not isinstance(block.pool, nn.Identity):
            raise ValueError(f"NIR export: layer {index} has {type(block.pool).__name__}; NIR has no max pooling")
        if flatten:
            source = graph.add(f"flatten{index}", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0,
                                                              end_dim=-1), source)
            shape = (int(np.prod(shape)),)
        weight = layer.weight.detach().cpu().numpy().astype(np.float32)
        bias = layer.bias.detach().cpu().numpy().astype(np.float32)
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1 or \
                    not isinstance(layer.padding, tuple):
                raise ValueError(f"NIR export: layer {index} convolution is not stride 1, ungrouped")
            padding = tuple(int(p) for p in layer.padding)
            out_shape = (weight.shape[0], shape[1] + 2 * padding[0] - weight.shape[2] + 1,
                         shape[2] + 2 * padding[1] - weight.shape[3] + 1)
            weight, padding = _square_kernel(weight, padding, index)
            source = graph.add(f"conv{index}", nir.Conv2d(input_shape=shape[1:], weight=weight, stride=1,
                                                          padding=padding, dilation=1, groups=1, bias=bias), source)
            shape = out_shape
        elif isinstance(layer, nn.Linear):
            source = graph.add(f"affine{index}", nir.Affine(weight=weight, bias=bias), source)
            shape = (weight.shape[0],)
        else:
            raise ValueError(f"NIR export: layer {index} synapse {type(layer).__name__} is not Conv2d or Linear")
        source = _neuron_nodes(graph, index, block.activation, shape, source,
                               membrane_out=index == last and readout == "membrane")
    graph.add("output", nir.Output(output_type={"output": np.array(shape)}), source)
    metadata = {"producer": "scnn", "dt": DT, "num_steps": int(steps), "readout": readout, "encoding": encoding,
                "input": input_note, "time": TIME_CONVENTION,
                "logits": f"sum over the {int(steps)} steps of the Output "
                          f"({'membrane' if readout == 'membrane' else 'spikes'})"}
    metadata["model"] = "spec_net" if isinstance(model, SpecNet) else "streaming"
    if isinstance(model, SpecNet):
        metadata["spec"] = config.spec
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=metadata)


# --------------------------------------------------------------------------- import


def _components(graph) -> list[list[str]]:
    """The graph's strongly connected components (a neuron with its reset/recurrent edges is one) in order from
    the Input to the Output; ValueError if they do not form one chain."""
    successors: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for source, target in graph.edges:
        if source not in successors or target not in successors:
            raise ValueError(f"NIR import: edge {source!r} -> {target!r} names a node the graph does not have")
        successors[source].append(target)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in successors[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    reachable = {name: reach(name) for name in graph.nodes}
    inputs = [name for name, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise ValueError(f"NIR import: the graph has {len(inputs)} Input nodes; scnn imports one chain")
    component = {name: sorted({name} | {other for other in reachable[name] if name in reachable[other]},
                              key=list(graph.nodes).index) for name in graph.nodes}
    chain = [component[inputs[0]]]
    while True:
        members = set(chain[-1])
        following = {tuple(component[t]) for name in members for t in successors[name] if t not in members}
        if not following:
            return chain
        if len(following) != 1:
            raise ValueError(f"NIR import: nodes {sorted(members)} feed {len(following)} separate nodes "
                             f"{sorted(f[0] for f in following)}; scnn imports one chain")
        chain.append(list(following.pop()))


def _decay(node, dt: float, name: str) -> np.ndarray:
    """Per-step decay of an LI/LIF node (float32, one per neuron); checks v_leak = 0 and r = tau / dt."""
    tau = np.asarray(node.tau, np.float64)
    if not np.allclose(node.v_leak, 0):
        raise ValueError(f"NIR import: node {name!r} has v_leak != 0")
    if not np.allclose(np.asarray(node.r, np.float64), tau / dt, rtol=1e-6):
        raise ValueError(f"NIR import: node {name!r} has r != tau / dt (input scaled by r dt / tau)")
    return (1.0 - dt / tau).astype(np.float32)


def _neuron_layer(graph, members: list[str], dt: float, readout_node: str | None) -> dict:
    """Describe one neuron component: kind, decays, threshold, recurrent node; ValueError naming the node."""
    nodes = {name: graph.nodes[name] for name in members}
    kinds = {name: type(node).__name__ for name, node in nodes.items()}
    for name, kind in kinds.items():
        if kind in ("CubaLIF", "IF"):
            raise ValueError(f"NIR import: node {name!r} is a {kind}, which resets at once; scnn's Synaptic "
                             "(zero reset) holds the membrane at zero for the step after a spike and has no "
                             "leak-free form, so it is written as LI + LI + Threshold + Scale(-threshold) (subtract "
                             "reset, see scnn.interop.nir)")
        if kind in ("CubaLI", "I"):
            raise ValueError(f"NIR import: node {name!r} is a {kind} (no spikes); scnn's layers all spike")
    if len(members) == 1 and kinds[members[0]] == "LIF":
        name, node = members[0], nodes[members[0]]
        if node.v_reset is not None and not np.allclose(node.v_reset, 0):
            raise ValueError(f"NIR import: LIF node {name!r} resets to v_reset != 0")
        return {"kind": "leaky", "reset": "zero", "beta": _decay(node, dt, name),
                "threshold": np.asarray(node.v_threshold, np.float32), "out": name, "recurrent": None}
    lifs = [name for name, kind in kinds.items() if kind == "LIF"]
    if lifs:
        raise ValueError(f"NIR import: LIF node {lifs[0]!r} has a recurrent edge (snntorch's RLeaky form): NIR's "
                         "LIF resets at once, scnn's RLeaky (reset_delay=True) holds the next membrane at zero; "
                         "write the recurrent layer as LI + Threshold + Scale(-threshold) + recurrent edge")
    membrane = [name for name, kind in kinds.items() if kind == "LI"]
    spike = [name for name, kind in kinds.items() if kind == "Threshold"]
    if len(membrane) != 1 or len(spike) != 1:
        raise ValueError(f"NIR import: nodes {members} ({', '.join(kinds.values())}) are not a neuron scnn "
                         "knows: one LIF, or one LI and one Threshold with a Scale(-threshold) reset edge")
    membrane, spike = membrane[0], spike[0]
    threshold = np.asarray(nodes[spike].threshold, np.float32)
    feedback = [name for name in members if name not in (membrane, spike)]
    resets = [name for name in feedback if kinds[name] == "Scale"
              and np.allclose(np.asarray(nodes[name].scale, np.float32), -threshold)]
    if not resets:
        raise ValueError(f"NIR import: neuron {membrane!r} has no Scale(-threshold) reset edge from {spike!r}; "
                         "scnn's neurons subtract the threshold after a spike")
    others = [name for name in feedback if name != resets[0]]
    if len(others) > 1 or any(kinds[name] not in ("Affine", "Linear", "Conv2d", "Scale") for name in others):
        raise ValueError(f"NIR import: neuron {membrane!r} has feedback nodes {others}; scnn takes one recurrent "
                         "Affine, Linear, Conv2d or Scale")
    for name in feedback:
        if (spike, name) not in graph.edges or (name, membrane) not in graph.edges:
            raise ValueError(f"NIR import: feedback node {name!r} must go from {spike!r} to {membrane!r}")
    if readout_node not in (None, membrane, spike):
        raise ValueError(f"NIR import: the Output reads {readout_node!r}; scnn reads spikes or the membrane")
    return {"kind": "rleaky" if others else "leaky", "reset": "subtract", "beta": _decay(nodes[membrane], dt, membrane),
            "threshold": threshold, "out": membrane if readout_node == membrane else spike,
            "recurrent": (others[0], nodes[others[0]]) if others else None}


def _per_channel(values: np.ndarray, what: str) -> np.ndarray | float:
    """One value per neuron -> one scalar, or one per channel (dimension 0); ValueError otherwise."""
    flat = values.reshape(values.shape[0], -1) if values.ndim > 1 else values.reshape(-1, 1)
    if np.all(values == values.reshape(-1)[0]):
        return float(values.reshape(-1)[0])
    if np.all(flat == flat[:, :1]):
        return flat[:, 0]
    raise ValueError(f"NIR import: {what} differs within a channel; scnn has one per layer or per channel")


def _assign(tensor: torch.Tensor, value, what: str) -> None:
    """Copy a scalar or per-channel value into a neuron's parameter or buffer (its shape kept)."""
    value = torch.as_tensor(np.asarray(value, np.float32))
    if value.dim() == 0:
        tensor.data.fill_(float(value))
    elif tensor.numel() == value.numel():
        tensor.data.copy_(value.reshape(tensor.shape))
    else:
        raise ValueError(f"NIR import: {what} has {value.numel()} values, the scnn layer takes {tensor.numel()}")


def _parse(graph, dt: float) -> tuple[tuple[int, ...], list[dict], str]:
    """The Input shape, one dict per layer (synapse node, flatten, neuron description) and the readout."""
    chain = _components(graph)
    shape = tuple(int(v) for v in np.asarray(next(iter(graph.nodes[chain[0][0]].input_type.values()))).reshape(-1))
    outputs = [name for name, node in graph.nodes.items() if type(node).__name__ == "Output"]
    if len(outputs) != 1 or chain[-1] != outputs:
        raise ValueError("NIR import: the chain must end in one Output node")
    readout_node = next(source for source, target in graph.edges if target == outputs[0])
    layers, pending, flatten, synaptic = [], None, False, None
    for members in chain[1:-1]:
        name = members[0]
        kind = type(graph.nodes[name]).__name__
        if len(members) == 1 and kind == "Flatten":
            flatten = True
            continue
        if len(members) == 1 and kind in ("Conv2d", "Affine", "Linear"):
            if pending is not None:
                raise ValueError(f"NIR import: node {name!r} ({kind}) follows {pending[0]!r} without a neuron between")
            pending = (name, graph.nodes[name])
            continue
        if len(members) == 1 and kind == "LI" and synaptic is None:
            synaptic = (name, graph.nodes[name])  # a synaptic current: the next component must be its neuron
            continue
        if kind == "NIRGraph":
            raise ValueError(f"NIR import: node {name!r} is a nested NIRGraph (snntorch's export of RLeaky/"
                             "RSynaptic wraps them so); scnn imports flat graphs (see scnn.interop.nir)")
        if len(members) == 1 and kind not in ("LIF", "CubaLIF", "CubaLI", "IF", "I"):
            raise ValueError(f"NIR import: node {name!r} is a {kind}; scnn imports Conv2d, Affine, Linear, Flatten, "
                             "LIF, and LI + Threshold neurons (see scnn.interop.nir)")
        if pending is None:
            raise ValueError(f"NIR import: neuron {name!r} has no synapse before it")
        layer = _neuron_layer(graph, members, dt, readout_node if readout_node in members else None)
        if synaptic is not None:
            if layer["kind"] != "leaky" or layer["reset"] != "subtract":
                raise ValueError(f"NIR import: LI node {synaptic[0]!r} feeds {name!r}, which is not an LI + "
                                 "Threshold neuron without recurrence (scnn's Synaptic)")
            layer.update(kind="synaptic", alpha=_decay(synaptic[1], dt, synaptic[0]))
        layer.update(synapse=pending, flatten=flatten)
        layers.append(layer)
        pending, flatten, synaptic = None, False, None
    if pending is not None or synaptic is not None or not layers:
        raise ValueError("NIR import: the graph must end in a neuron before its Output")
    readout = "membrane" if readout_node == layers[-1]["out"] and \
        type(graph.nodes[readout_node]).__name__ == "LI" else "spike_count"
    return shape, layers, readout


def _common(layers: list[dict], key: str, default: float) -> float:
    """The one value of ``key`` all the layers share (the config then states it), else ``default`` (the
    per-layer values are copied in afterwards)."""
    values = np.unique(np.concatenate([layer[key].reshape(-1) for layer in layers]))
    return float(values[0]) if values.size == 1 else default


def _neuron_options(layers: list[dict]) -> dict:
    """RLeaky constructor options from the recurrent nodes: one-to-one (Scale) or all-to-all (Affine on dense
    layers, Conv2d on conv maps, one kernel size) for the whole net."""
    kinds = {type(layer["recurrent"][1]).__name__ for layer in layers}
    one_to_one = {kind == "Scale" for kind in kinds}
    kernels = {int(np.asarray(layer["recurrent"][1].weight).shape[-1]) for layer in layers
               if type(layer["recurrent"][1]).__name__ == "Conv2d"}
    if len(one_to_one) > 1 or len(kernels) > 1:
        raise ValueError(f"NIR import: the recurrent layers mix forms {sorted(kinds)} (kernels {sorted(kernels)}); "
                         "scnn builds one-to-one or all-to-all, one recurrent kernel, per net")
    if one_to_one.pop():
        return {"all_to_all": False}
    return {"recurrent_kernel": kernels.pop()} if kernels else {}


def _copy_layer(block, layer: dict, index: int) -> None:
    """Copy synapse weights and neuron parameters of one parsed layer into an scnn block."""
    name, node = layer["synapse"]
    weight = np.asarray(node.weight, np.float32)
    bias = np.asarray(getattr(node, "bias", np.zeros(weight.shape[0])), np.float32)
    target = block.synapse[-1] if isinstance(block.synapse, nn.Sequential) else block.synapse
    if type(node).__name__ == "Conv2d" and tuple(target.weight.shape) != weight.shape:
        weight = _unsquare_kernel(weight, node.padding)[0]  # a k x 1 kernel the export squared
    if tuple(target.weight.shape) != weight.shape:
        raise ValueError(f"NIR import: weights of {name!r} {weight.shape} do not fit layer {index} "
                         f"{tuple(target.weight.shape)}")
    with torch.no_grad():
        target.weight.copy_(torch.from_numpy(weight))
        target.bias.copy_(torch.from_numpy(bias))
        neuron = block.activation
        parameters = neuron.neuron_parameters()  # the neuron's own tensors: assigned in place
        _assign(parameters["beta"], _per_channel(layer["beta"], f"beta of layer {index}"), f"beta of layer {index}")
        _assign(parameters["threshold"], _per_channel(layer["threshold"], f"threshold of layer {index}"),
                f"threshold of layer {index}")
        if layer["kind"] == "synaptic":
            _assign(parameters["alpha"], _per_channel(layer["alpha"], f"alpha of layer {index}"),
                    f"alpha of layer {index}")
        if layer["recurrent"] is not None:
            rec_name, rec = layer["recurrent"]
            (recurrent,) = neuron.recurrent_synapses()
            if type(rec).__name__ == "Scale":
                values = torch.from_numpy(np.asarray(rec.scale, np.float32))
                uniform = bool(torch.all(values == values.reshape(-1)[0]))
                recurrent.V.data = values.reshape(-1)[0].clone() if uniform else values
            else:
                if tuple(recurrent.weight.shape) != np.asarray(rec.weight).shape:
                    raise ValueError(f"NIR import: recurrent node {rec_name!r} {np.asarray(rec.weight).shape} does "
                                     f"not fit layer {index} {tuple(recurrent.weight.shape)}")
                recurrent.weight.copy_(torch.from_numpy(np.asarray(rec.weight, np.float32)))
                rec_bias = getattr(rec, "bias", None)
                recurrent.bias.copy_(torch.from_numpy(np.asarray(rec_bias if rec_bias is not None
                                                                 else np.zeros(recurrent.bias.shape), np.float32)))


def import_nir(graph, num_steps: int | None = None, readout: str | None = None):
    """An scnn model from a NIR graph written in the forms of the module docstring: a spec net (one neuron kind,
    unpadded convolutions), or a streaming model (scnn's frames export: a padded (k, 1) frequency convolution
    on one frame per step, hidden layers of one kind, a Leaky readout). ValueError naming any node it cannot
    express. num_steps: from the graph's metadata when it has it (scnn's exports do), else required; readout:
    from the graph (the Output reads the membrane or the spikes) unless given."""
    from scnn.models import create_model

    _nir()
    steps = num_steps or graph.metadata.get("num_steps")
    if not steps:
        raise ValueError("NIR import: the graph does not say its number of steps; pass num_steps")
    dt = float(graph.metadata.get("dt", DT))
    shape, layers, found_readout = _parse(graph, dt)
    readout = readout or found_readout
    if readout != found_readout:
        raise ValueError(f"NIR import: readout {readout!r} asked, but the graph's Output reads the "
                         f"{'membrane' if found_readout == 'membrane' else 'spikes'}")
    resets = {layer["reset"] for layer in layers}
    if len(resets) != 1:
        raise ValueError(f"NIR import: the layers mix resets {sorted(resets)}; scnn uses one per net")
    reset = resets.pop()
    first = layers[0]["synapse"][1]
    family = graph.metadata.get("model")  # scnn's exports say; other graphs: a padded convolution is streaming
    streaming = family == "streaming" or (family is None and type(first).__name__ == "Conv2d"
                                          and np.any(np.asarray(first.padding) != 0))
    encoding = graph.metadata.get("encoding", "direct")
    per_channel = any(not np.all(layer[key] == layer[key].reshape(-1)[0])
                      for layer in layers for key in ("beta", "threshold", "alpha") if key in layer)
    if streaming:
        model = _streaming_model(shape, layers, int(steps), reset, readout)
    else:
        kinds = {layer["kind"] for layer in layers}
        if len(kinds) != 1:
            raise ValueError(f"NIR import: the layers mix neurons {sorted(kinds)}; a spec net has one kind")
        spec = []
        for layer in layers:
            name, node = layer["synapse"]
            weight = np.asarray(node.weight)
            if type(node).__name__ == "Conv2d":
                weight, padding = _unsquare_kernel(weight, node.padding)  # as scnn's export squared it
                # square, or k x 1 in a model fed one frame per step (a kxk kernel has nothing to slide over
                # along a frame's width of 1, so the spec net builds it k x 1)
                square = weight.shape[2] == weight.shape[3] or (encoding == "frames" and weight.shape[3] == 1)
                if (np.any(np.asarray(node.stride) != 1) or np.any(np.asarray(padding) != 0)
                        or np.any(np.asarray(node.dilation) != 1) or node.groups != 1 or not square):
                    raise ValueError(f"NIR import: Conv2d node {name!r} is not square (or k x 1 fed frame by "
                                     "frame), stride 1, unpadded")
                spec.append(f"{weight.shape[0]}C{weight.shape[2]}")
            else:
                spec.append(f"{weight.shape[0]}FC")
        kind = kinds.pop()
        options = _neuron_options(layers) if kind == "rleaky" else {}
        inputs = {"sequence": {"input_kind": "sequence"}, "frames": {"encoding": "frames"}}.get(encoding, {})
        model = create_model("-".join(spec), input_shape=shape, num_steps=int(steps), neuron=kind, **inputs,
                             reset_mechanism=reset, readout=readout, per_channel_beta=per_channel,
                             beta=_common(layers, "beta", 0.5), threshold=_common(layers, "threshold", 1.0),
                             neuron_options=options)
    for index, (block, layer) in enumerate(zip(model.blocks, layers)):
        _copy_layer(block, layer, index)
    return model.eval()


def _streaming_model(shape, layers: list[dict], steps: int, reset: str, readout: str):
    """A streaming model (scnn.models.streaming) for a parsed frames graph; ValueError if it is not one."""
    from scnn.models import create_model

    name, conv = layers[0]["synapse"]
    weight = np.asarray(conv.weight, np.float32)
    padding = tuple(int(p) for p in np.asarray(conv.padding).reshape(-1))
    kernel = weight.shape[2]
    middle = kernel // 2
    if type(conv).__name__ == "Conv2d" and weight.shape[3] == kernel and padding == (middle, middle) and \
            not np.any(np.delete(weight, middle, axis=3)):
        # scnn's export of the (k, 1) frequency kernel as a square kernel zero outside its middle column
        weight, padding = weight[:, :, :, middle:middle + 1], (middle, 0)
        layers[0]["synapse"] = (name, SimpleNamespace(weight=weight, bias=conv.bias))
    if (len(shape) != 3 or shape[0] != 1 or shape[2] != 1 or weight.shape[3] != 1
            or padding != (kernel // 2, 0) or kernel % 2 == 0 or len(layers) < 3):
        raise ValueError("NIR import: a frames graph must be scnn's streaming form: input [1, F, 1], a Conv2d "
                         "(odd kernel, 1) padded (kernel // 2, 0), hidden dense layers, a Leaky readout")
    hidden = layers[1:-1]
    kinds = {layer["kind"] for layer in hidden}
    if len(kinds) != 1 or layers[-1]["kind"] != "leaky" or layers[-1]["recurrent"] is not None:
        raise ValueError(f"NIR import: streaming hidden layers {sorted(kinds)} must be one kind and the readout a "
                         "Leaky")
    if readout != "membrane":
        raise ValueError("NIR import: scnn's streaming models read out the classifier's membrane; the graph's "
                         "Output reads spikes")
    kind = kinds.pop()
    options = _neuron_options(hidden) if kind == "rleaky" else {}
    return create_model("streaming", input_shape=(1, shape[1], steps), channels=weight.shape[0], kernel=kernel,
                        hidden=tuple(np.asarray(layer["synapse"][1].weight).shape[0] for layer in hidden),
                        conv_neuron=layers[0]["kind"], neuron=kind, neuron_options=options,
                        num_classes=np.asarray(layers[-1]["synapse"][1].weight).shape[0],
                        reset_mechanism=reset, per_channel_beta=True, beta=_common(layers[:-1], "beta", 0.9),
                        threshold=_common(layers, "threshold", 1.0), readout_beta=_common(layers[-1:], "beta", 0.9))


def export_nir_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """``scnn export-nir CHECKPOINT OUT.nir``: write the checkpoint's model as a NIR file (HDF5)."""
    from scnn.train.evaluate import load_trained_model

    nir = _nir()
    model, _ = load_trained_model(checkpoint)
    graph = export_nir(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    nir.write(tmp, graph)
    tmp.replace(out)
    return out
