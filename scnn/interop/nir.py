"""NIR (the Neuromorphic Intermediate Representation, package ``nir``) export and import of spec nets
with Leaky neurons: :func:`export_nir`, :func:`import_nir`, :func:`export_nir_checkpoint`.

Time: NIR neurons are continuous-time, ``tau dv/dt = (v_leak - v) + r I``. One scnn step is
``DT`` = 1e-4 s (snntorch's NIR convention, so ``snntorch.import_nir.import_from_nir`` reads the
graph back); forward Euler over one step gives ``v <- (1 - DT/tau) v + (DT r / tau) I``, so

    tau = DT / (1 - beta),   r = tau / DT,   v_leak = 0,   v_threshold = threshold,   v_reset = 0

and ``beta = 1 - DT / tau`` on import. A graph is a chain ``Input -> (Conv2d | [Flatten] Affine) ->
LIF -> ... -> Output``; the first synapse sees the same static input at every step (direct encoding).

What NIR cannot express, and the exporter refuses naming the layer: the subtract reset (NIR's LIF
resets to ``v_reset``), max pooling (NIR has sum and average pooling only), the membrane readout
(a NIR graph outputs spikes; scnn's membrane readout sums the pre-reset membrane, which NIR's
reset-to-zero state does not hold), other neurons (no ``lif_parameters()``) and non-spiking nets.
Spikes are unaffected by when the zero reset is applied: scnn applies it at the next step
(``U[t] = beta (1 - S[t-1]) U[t-1] + I[t]``), NIR at once; the next membrane is the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

DT = 1e-4  # seconds per scnn time step in exported graphs (snntorch's NIR convention)


def _nir():
    try:
        import nir
    except ImportError as error:  # pinned in requirements.txt
        raise ValueError("NIR export and import need the package 'nir' (pip install -r requirements.txt)") from error
    return nir


def export_nir(model: nn.Module):
    """A ``nir.NIRGraph`` of a spiking spec net with Leaky neurons (ValueError naming what NIR cannot express)."""
    from scnn.models.spec_net import SpecNet

    nir = _nir()
    if not isinstance(model, SpecNet):
        raise ValueError(f"NIR export takes spec nets (Model A/B, spec strings), got {type(model).__name__}")
    config = model.config
    if not config.spiking:
        raise ValueError("NIR export: the model is not spiking (ReLU control CNN); NIR graphs here hold LIF neurons")
    if config.input_kind != "static" or config.encoding != "direct":
        raise ValueError(f"NIR export: input {config.input_kind!r} with encoding {config.encoding!r}; the graph "
                         "feeds the static input at every step (direct encoding) only")
    if config.readout != "membrane" and config.readout != "spike_count":
        raise ValueError(f"NIR export: unknown readout {config.readout!r}")
    if config.readout == "membrane":
        raise ValueError(f"NIR export: layer {len(model.blocks) - 1} is read out by its membrane (readout="
                         "'membrane'); a NIR graph outputs spikes and its LIF state holds the membrane after the "
                         "reset, so the logits would differ: train with readout='spike_count' to export")
    model = model.eval()
    shape = tuple(config.input_shape)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    chain = ["input"]
    for index, block in enumerate(model.blocks):
        synapse = block.synapse
        flatten = isinstance(synapse, nn.Sequential)
        layer = synapse[-1] if flatten else synapse
        if not isinstance(block.pool, nn.Identity):
            raise ValueError(f"NIR export: layer {index} has {type(block.pool).__name__}; NIR has no max pooling")
        if flatten:
            nodes[f"flatten{index}"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            chain.append(f"flatten{index}")
            shape = (int(np.prod(shape)),)
        weight = layer.weight.detach().double().numpy().astype(np.float32)
        bias = layer.bias.detach().numpy().astype(np.float32)
        if isinstance(layer, nn.Conv2d):
            if layer.stride != (1, 1) or layer.padding != (0, 0) or layer.dilation != (1, 1) or layer.groups != 1:
                raise ValueError(f"NIR export: layer {index} convolution is not stride 1, unpadded, ungrouped")
            nodes[f"conv{index}"] = nir.Conv2d(input_shape=shape[1:], weight=weight, stride=1, padding=0,
                                               dilation=1, groups=1, bias=bias)
            chain.append(f"conv{index}")
            shape = (weight.shape[0], shape[1] - weight.shape[2] + 1, shape[2] - weight.shape[3] + 1)
        elif isinstance(layer, nn.Linear):
            nodes[f"affine{index}"] = nir.Affine(weight=weight, bias=bias)
            chain.append(f"affine{index}")
            shape = (weight.shape[0],)
        else:
            raise ValueError(f"NIR export: layer {index} synapse {type(layer).__name__} is not Conv2d or Linear")
        parameters = block.activation.lif_parameters() if hasattr(block.activation, "lif_parameters") else None
        if parameters is None:
            raise ValueError(f"NIR export: layer {index} neuron {type(block.activation).__name__} is not a "
                             "first-order LIF (no lif_parameters())")
        if not parameters.reset_to_zero:
            raise ValueError(f"NIR export: layer {index} uses the subtract reset; NIR's LIF resets to v_reset "
                             "(train with reset_mechanism='zero' to export)")
        beta = parameters.beta.detach().double().clamp(0, 1).numpy()
        if beta.size != 1 or float(beta.reshape(-1)[0]) >= 1.0:
            raise ValueError(f"NIR export: layer {index} has beta {beta.tolist()}; the exporter writes one beta "
                             "below 1 per layer (NIR tau = dt / (1 - beta))")
        beta = float(beta.reshape(-1)[0])
        tau = DT / (1.0 - beta)
        ones = np.ones(shape, np.float32)
        nodes[f"lif{index}"] = nir.LIF(tau=ones * tau, r=ones * (tau / DT), v_leak=ones * 0,
                                       v_threshold=ones * float(parameters.threshold.detach().reshape(-1)[0]),
                                       v_reset=ones * 0)
        chain.append(f"lif{index}")
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    chain.append("output")
    metadata = {"producer": "scnn", "dt": DT, "num_steps": int(config.num_steps), "readout": config.readout,
                "spec": config.spec, "encoding": "direct: the input is fed unchanged at every step"}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata=metadata)


def _chain(graph) -> list[str]:
    """Node names from input to output (ValueError if the graph is not one chain)."""
    successors: dict[str, list[str]] = {}
    for source, target in graph.edges:
        successors.setdefault(source, []).append(target)
    inputs = [name for name, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise ValueError(f"NIR import: the graph has {len(inputs)} Input nodes; scnn imports one chain")
    chain = [inputs[0]]
    while chain[-1] in successors:
        following = successors[chain[-1]]
        if len(following) != 1:
            raise ValueError(f"NIR import: node {chain[-1]!r} feeds {len(following)} nodes; scnn imports one chain")
        chain.append(following[0])
    return chain


def import_nir(graph, num_steps: int | None = None, readout: str = "spike_count"):
    """A scnn spec net (zero reset, Leaky neurons) from a chain NIR graph; ValueError naming any node it cannot
    express. num_steps: from the graph's metadata when it has it (scnn's exports do), else required."""
    from scnn.models import create_model

    nir = _nir()
    chain = _chain(graph)
    nodes = [(name, graph.nodes[name]) for name in chain]
    input_node = nodes[0][1]
    shape = tuple(int(v) for v in np.asarray(next(iter(input_node.input_type.values()))).reshape(-1))
    steps = num_steps or graph.metadata.get("num_steps")
    if not steps:
        raise ValueError("NIR import: the graph does not say its number of steps; pass num_steps")
    dt = float(graph.metadata.get("dt", DT))
    layers, betas, thresholds, spec, current = [], [], [], [], shape
    pending = None
    for name, node in nodes[1:]:
        kind = type(node).__name__
        if kind == "Output":
            break
        if kind == "Flatten":
            current = (int(np.prod(current)),)
            continue
        if kind in ("Conv2d", "Affine", "Linear"):
            if pending is not None:
                raise ValueError(f"NIR import: node {name!r} ({kind}) follows {pending[0]!r} without a LIF between")
            pending = (name, node)
            continue
        if kind != "LIF":
            raise ValueError(f"NIR import: node {name!r} is a {kind}; scnn imports Conv2d, Affine, Linear, Flatten "
                             "and LIF nodes")
        if pending is None:
            raise ValueError(f"NIR import: LIF node {name!r} has no synapse before it")
        if not np.allclose(node.v_leak, 0):
            raise ValueError(f"NIR import: LIF node {name!r} has v_leak != 0")
        if node.v_reset is not None and not np.allclose(node.v_reset, 0):
            raise ValueError(f"NIR import: LIF node {name!r} resets to v_reset != 0")
        tau, r = np.asarray(node.tau, np.float64), np.asarray(node.r, np.float64)
        if not np.allclose(r, tau / dt):
            raise ValueError(f"NIR import: LIF node {name!r} has r != tau / dt (input scaled by r dt / tau)")
        beta, threshold = np.unique(1.0 - dt / tau), np.unique(np.asarray(node.v_threshold, np.float64))
        if beta.size != 1 or threshold.size != 1:
            raise ValueError(f"NIR import: LIF node {name!r} has several tau or thresholds; scnn uses one per net")
        betas.append(float(beta[0]))
        thresholds.append(float(threshold[0]))
        synapse_name, synapse = pending
        weight = np.asarray(synapse.weight, np.float32)
        bias = np.asarray(getattr(synapse, "bias", np.zeros(weight.shape[0])), np.float32)
        if type(synapse).__name__ == "Conv2d":
            if (np.any(np.asarray(synapse.stride) != 1) or np.any(np.asarray(synapse.padding) != 0)
                    or np.any(np.asarray(synapse.dilation) != 1) or synapse.groups != 1
                    or weight.shape[2] != weight.shape[3]):
                raise ValueError(f"NIR import: Conv2d node {synapse_name!r} is not square, stride 1, unpadded")
            spec.append(f"{weight.shape[0]}C{weight.shape[2]}")
            current = (weight.shape[0], current[1] - weight.shape[2] + 1, current[2] - weight.shape[3] + 1)
        else:
            spec.append(f"{weight.shape[0]}FC")
            current = (weight.shape[0],)
        layers.append((weight, bias))
        pending = None
    if not layers or len(set(np.round(betas, 6))) != 1 or len(set(thresholds)) != 1:
        raise ValueError(f"NIR import: the LIF nodes have betas {betas} and thresholds {thresholds}; scnn spec nets "
                         "use one beta and one threshold")
    model = create_model("-".join(spec), input_shape=shape, num_steps=int(steps), beta=betas[0],
                         threshold=thresholds[0], reset_mechanism="zero", readout=readout)
    with torch.no_grad():
        for block, (weight, bias) in zip(model.blocks, layers):
            layer = block.synapse[-1] if isinstance(block.synapse, nn.Sequential) else block.synapse
            if tuple(layer.weight.shape) != weight.shape:
                raise ValueError(f"NIR import: weights {weight.shape} do not fit layer {tuple(layer.weight.shape)}")
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
    return model.eval()


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
