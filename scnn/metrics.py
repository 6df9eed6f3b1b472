"""What every accuracy costs: operations, sparsity, footprint and energy, per sample.

Definitions follow NeuroBench (``neurobench/metrics``) so that numbers compare
with published ones. Static metrics depend on the model only; workload metrics
on the model and the data, and are averaged per sample.

Static
    parameter_count       weights and biases (neuron beta/threshold excluded).
    connection_sparsity   zero weights / all weights of conv and linear layers (biases excluded).
    footprint_bytes       parameters + buffers at 32-bit floats; the int8 figure stores weights in
                          8 bits and biases in 32 bits (the integer artefact's layout).

Workload (per sample)
    dense MACs            multiply-accumulates of conv and linear layers as executed, counted by
                          fvcore's FlopCountAnalysis on one sample; FLOPs = 2 x MACs. Convention
                          "as executed": the first (static-input) layer runs once and every later
                          layer T times. The reference code's convention, where every layer runs at
                          every step, is reported beside it as ``per_step``.
    synaptic operations   NeuroBench's SynapticOperations: a layer fed by binary spikes performs
                          accumulate-only operations (ACs), one per non-zero input per non-zero
                          weight it fans out to; a layer fed by real values performs MACs, counted
                          the same way (zero inputs cost nothing); ``dense`` counts every
                          input-weight pair. Summed over layers and time steps. A recurrent
                          neuron's own synapses (``recurrent_synapses()``) count the same way, fed
                          the layer's spikes of the previous step (``blocks.N.recurrent``).
    activation sparsity   zero activations / all activations over LIF layers (ReLU layers for the
                          control CNN), neurons, time steps and samples (NeuroBench's definition).
    firing rate           spikes per neuron per step, averaged over samples (for histograms).
    membrane updates      neuron-state updates: every LIF neuron updates once per step.
    energy                operation counts times per-operation energies (:data:`ENERGY_45NM_PJ`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from scnn.features.encoders import get_encoder
from scnn.models.outputs import LogitsOnly
from scnn.models.registry import count_parameters, is_spiking

# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm CMOS, picojoules per operation.
ENERGY_45NM_PJ = {"float32_mac": 4.6, "float32_add": 0.9, "int8_mac": 0.2, "int8_add": 0.03}


# --------------------------------------------------------------------------- static metrics


def connection_layers(model: nn.Module) -> list[nn.Module]:
    """Conv and linear layers in forward order."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def parameter_count(model: nn.Module) -> int:
    """Weights and biases (see :func:`scnn.models.count_parameters`)."""
    return count_parameters(model)


def connection_sparsity(model: nn.Module) -> float:
    """Fraction of zero entries over all conv/linear weight tensors (NeuroBench's ConnectionSparsity)."""
    zeros = sum(int((layer.weight == 0).sum()) for layer in connection_layers(model))
    total = sum(layer.weight.numel() for layer in connection_layers(model))
    return zeros / total if total else 0.0


def footprint_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of parameters and buffers: as stored (float32) and as an int8 model (8-bit weights, 32-bit biases)."""
    float_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    float_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    weights = sum(layer.weight.numel() for layer in connection_layers(model))
    biases = sum(layer.bias.numel() for layer in connection_layers(model) if layer.bias is not None)
    return {"float32": float_bytes, "int8": weights + 4 * biases}


# --------------------------------------------------------------------------- dense cost (fvcore)


def dense_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Dense MACs per sample by layer, counted by fvcore on one sample ``[1, *input_shape]``.

    Returns ``{"as_executed": total, "per_step": total, "flops_as_executed": 2 x total,
    "per_layer": {name: MACs as executed}}``; see the module docstring for the conventions.
    """
    from fvcore.nn import FlopCountAnalysis

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        # fvcore traces a module that returns tensors; ours return a NetOutput.
        analysis = FlopCountAnalysis(LogitsOnly(model), torch.zeros(1, *input_shape, device=device))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        by_module = analysis.by_module()
        total = int(analysis.total())
    model.train(was_training)
    per_layer = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            per_layer[name] = int(by_module.get(f"model.{name}", 0))
    # The hoisted first layer ran once; the reference code runs it at every step too.
    first_layer_macs = next(iter(per_layer.values()), 0)
    hoisted = is_spiking(model) and model.input_kind == "static"
    per_step = total + (_num_steps(model) - 1) * first_layer_macs if hoisted else total
    return {"as_executed": total, "per_step": per_step, "flops_as_executed": 2 * total, "per_layer": per_layer}


def _num_steps(model: nn.Module) -> int:
    return int(getattr(model, "num_steps", 1))


# --------------------------------------------------------------------------- workload metrics


@dataclass
class LayerActivity:
    """What one block saw and produced on a batch.

    synapse_input: input to the block's conv/linear, ``[N, ...]`` with N = B (run once) or T*B.
    activation_output: the activation's output ``[T, B, ...]`` (spikes) or ``[1, B, ...]`` (ReLU),
        None for a classifier without activation (control CNN).
    """

    name: str
    connection: nn.Module
    synapse_input: torch.Tensor
    activation_output: torch.Tensor | None
    recurrent: list[nn.Module] = field(default_factory=list)  # the neuron's recurrent synapses (fed S[t-1])


@torch.no_grad()
def record_activity(model: nn.Module, x: torch.Tensor) -> list[LayerActivity]:
    """Run ``model`` on ``x [B, C, H, W]`` and collect every block's synapse input and activation output."""
    model.eval()
    activity = []
    connections = [[m for m in block.synapse.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][0]
                   for block in model.blocks]
    if is_spiking(model):
        if x.dim() == 4:  # encode here, so the first layer's recorded input is what it really sees
            x = get_encoder(model.config.encoding).encode(x, model.num_steps)
        output = model(x, record=True)
        first_input = x if x.dim() == 4 or model.input_kind == "static" else x.flatten(0, 1)
        inputs = [first_input] + [s.flatten(0, 1) for s in output.layer_spikes[:-1]]
        for index, (block, spikes) in enumerate(zip(model.blocks, output.layer_spikes)):
            activity.append(LayerActivity(f"blocks.{index}", connections[index], inputs[index], spikes,
                                          block.activation.recurrent_synapses()))
        return activity
    h = x
    for index, block in enumerate(model.blocks):
        synapse_input = h
        h = block.activation(block.current(h))
        is_activation = not isinstance(block.activation, nn.Identity)
        activity.append(LayerActivity(f"blocks.{index}", connections[index], synapse_input,
                                      h.unsqueeze(0) if is_activation else None))
    return activity


def _binary_layer_ops(layer: nn.Module, inputs: torch.Tensor, dense: bool) -> int:
    """NeuroBench's count: run a copy of the layer with weights (w != 0) and inputs (x != 0), no bias."""
    weight = torch.ones_like(layer.weight) if dense else (layer.weight != 0).float()
    inputs = torch.ones_like(inputs) if dense else (inputs != 0).float()
    if isinstance(layer, nn.Linear):
        return int(F.linear(inputs.flatten(1), weight).sum())
    return int(F.conv2d(inputs, weight, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                        groups=layer.groups).sum())


def _recurrent_ops(module: nn.Module, spikes: torch.Tensor) -> tuple[int, int]:
    """(effective, dense) accumulates of a neuron's recurrent synapse fed ``spikes [N, ...]``: a Linear or
    Conv2d counts as a layer does; one-to-one feedback (a weight ``V`` per neuron) one per spike."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return _binary_layer_ops(module, spikes, dense=False), _binary_layer_ops(module, spikes, dense=True)
    weight = torch.as_tensor(module.V)
    return int(((spikes != 0) & (weight != 0)).sum()), spikes.numel()


def is_binary(tensor: torch.Tensor) -> bool:
    """True if every entry is 0 or 1 (NeuroBench also admits -1)."""
    return bool(((tensor == 0) | (tensor == 1) | (tensor == -1)).all())


def synaptic_operations(activity: list[LayerActivity], batch_size: int, first_layer_steps: int = 1) -> dict:
    """Effective MACs, effective ACs and dense operations per sample, and per layer.

    first_layer_steps: how many times the static first layer counts (1: as executed with
    hoisting; T: NeuroBench's step-by-step convention).
    """
    totals = {"effective_macs": 0, "effective_acs": 0, "dense": 0}
    per_layer = {}
    for index, layer in enumerate(activity):
        repeat = first_layer_steps if index == 0 else 1
        effective = _binary_layer_ops(layer.connection, layer.synapse_input, dense=False) * repeat
        dense = _binary_layer_ops(layer.connection, layer.synapse_input, dense=True) * repeat
        kind = "effective_acs" if is_binary(layer.synapse_input) else "effective_macs"
        totals[kind] += effective
        totals["dense"] += dense
        per_layer[layer.name] = {"kind": kind.removeprefix("effective_"), "effective": effective / batch_size,
                                 "dense": dense / batch_size}
        for position, module in enumerate(layer.recurrent):
            # Step t feeds back the spikes of step t-1: the last step's spikes feed nothing.
            fed_back = layer.activation_output[:-1].flatten(0, 1)
            effective, dense = _recurrent_ops(module, fed_back)
            totals["effective_acs"] += effective
            totals["dense"] += dense
            suffix = "" if position == 0 else f".{position}"
            per_layer[f"{layer.name}.recurrent{suffix}"] = {"kind": "acs", "effective": effective / batch_size,
                                                            "dense": dense / batch_size}
    per_sample = {key: value / batch_size for key, value in totals.items()}
    return {**per_sample, "per_layer": per_layer}


def activation_sparsity(activity: list[LayerActivity]) -> dict:
    """Zero activations / all activations, overall and per layer (neurons x steps x samples)."""
    zeros, total, per_layer = 0, 0, {}
    for layer in activity:
        if layer.activation_output is None:
            continue
        layer_zeros = int((layer.activation_output == 0).sum())
        layer_total = layer.activation_output.numel()
        per_layer[layer.name] = layer_zeros / layer_total
        zeros, total = zeros + layer_zeros, total + layer_total
    return {"overall": zeros / total if total else 0.0, "per_layer": per_layer}


def firing_rates(activity: list[LayerActivity]) -> dict[str, torch.Tensor]:
    """Spikes per neuron per step, averaged over steps and samples: ``{layer: [neurons]}``."""
    return {layer.name: layer.activation_output.float().mean(dim=(0, 1)).flatten()
            for layer in activity if layer.activation_output is not None}


def membrane_updates(activity: list[LayerActivity]) -> int:
    """Neuron-state updates per sample: every LIF neuron updates once per time step (neurons x T)."""
    return sum(layer.activation_output[0, 0].numel() * layer.activation_output.shape[0]
               for layer in activity if layer.activation_output is not None)


def energy_estimate(effective_macs: float, effective_acs: float, dense_macs: float, precision: str = "float32",
                    energies_pj: dict | None = None) -> dict:
    """Synaptic energy per sample in picojoules (membrane and memory access energy not included).

    spiking: effective MACs x MAC energy + effective ACs x add energy; dense: every MAC of the
    equivalent non-spiking computation at MAC energy. precision: "float32" or "int8".
    """
    energies = {**ENERGY_45NM_PJ, **(energies_pj or {})}
    mac, add = energies[f"{precision}_mac"], energies[f"{precision}_add"]
    return {"synaptic_pj": effective_macs * mac + effective_acs * add, "dense_pj": dense_macs * mac,
            "precision": precision, "energies_pj": {f"{precision}_mac": mac, f"{precision}_add": add}}


# --------------------------------------------------------------------------- one call


@dataclass
class Profile:
    """Everything :func:`profile_model` measures (per sample where it is a count)."""

    num_steps: int
    parameters: int
    connection_sparsity: float
    footprint_bytes: dict
    dense_macs: dict
    synaptic_operations: dict
    synaptic_operations_per_step: dict
    activation_sparsity: dict
    membrane_updates: float
    energy_float32: dict
    energy_int8: dict
    num_samples: int

    def to_dict(self) -> dict:
        return asdict(self)

    def row(self) -> dict:
        """The profile as one flat row: the one format every table, results file and search report uses.

        Keys (per sample where a count; ``scnn.result_tables.PROFILE_COLUMNS`` gives each one's
        type, unit and meaning): num_steps, num_samples, parameters, connection_sparsity,
        footprint_float32_bytes, footprint_int8_bytes, dense_macs (as executed), dense_macs_per_step,
        effective_macs, effective_acs, synops (effective MACs + ACs), dense_synops,
        activation_sparsity (fraction), membrane_updates, energy_float32_nj, energy_int8_nj,
        dense_energy_float32_nj, dense_energy_int8_nj. Per-layer figures stay in :meth:`to_dict`.
        """
        ops = self.synaptic_operations
        return {
            "num_steps": self.num_steps,
            "num_samples": self.num_samples,
            "parameters": self.parameters,
            "connection_sparsity": self.connection_sparsity,
            "footprint_float32_bytes": self.footprint_bytes["float32"],
            "footprint_int8_bytes": self.footprint_bytes["int8"],
            "dense_macs": self.dense_macs["as_executed"],
            "dense_macs_per_step": self.dense_macs["per_step"],
            "effective_macs": ops["effective_macs"],
            "effective_acs": ops["effective_acs"],
            "synops": ops["effective_macs"] + ops["effective_acs"],
            "dense_synops": ops["dense"],
            "activation_sparsity": self.activation_sparsity["overall"],
            "membrane_updates": int(self.membrane_updates),
            "energy_float32_nj": self.energy_float32["synaptic_pj"] / 1000,
            "energy_int8_nj": self.energy_int8["synaptic_pj"] / 1000,
            "dense_energy_float32_nj": self.energy_float32["dense_pj"] / 1000,
            "dense_energy_int8_nj": self.energy_int8["dense_pj"] / 1000,
        }


def profile_model(model: nn.Module, x: torch.Tensor, batch_size: int = 100) -> Profile:
    """Static and workload metrics of ``model`` on samples ``x [N, C, H, W]`` (averaged per sample).

    Models that are not spec CNNs (the SSM baseline) report their own recurrent-mode MACs
    per sample (``model.macs_per_sample()``): every one is a real-valued MAC, none is skipped.
    """
    if hasattr(model, "macs_per_sample"):
        return _profile_dense_model(model, len(x))
    device = next(model.parameters()).device
    totals: dict | None = None
    per_step_totals: dict | None = None
    sparsity_counts = {}
    # The first layer of a directly encoded model runs once on its static input; NeuroBench counts it
    # at every step. A sequence-encoded model's first layer already sees T inputs: no repeat.
    static_first = is_spiking(model) and model.input_kind == "static"
    steps = _num_steps(model) if static_first else 1
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size].to(device)
        activity = record_activity(model, batch)
        count = len(batch)
        ops = synaptic_operations(activity, count)
        ops_per_step = synaptic_operations(activity, count, first_layer_steps=steps)
        totals = _accumulate(totals, ops, count)
        per_step_totals = _accumulate(per_step_totals, ops_per_step, count)
        for layer in activity:
            if layer.activation_output is not None:
                zeros, total = sparsity_counts.get(layer.name, (0, 0))
                sparsity_counts[layer.name] = (zeros + int((layer.activation_output == 0).sum()),
                                               total + layer.activation_output.numel())
        updates = membrane_updates(activity) if is_spiking(model) else 0
    samples = len(x)
    ops = _average(totals, samples)
    ops_per_step = _average(per_step_totals, samples)
    all_zeros = sum(z for z, _ in sparsity_counts.values())
    all_total = sum(t for _, t in sparsity_counts.values())
    sparsity = {"overall": all_zeros / all_total if all_total else 0.0,
                "per_layer": {name: z / t for name, (z, t) in sparsity_counts.items()}}
    dense = dense_macs(model, tuple(x.shape[1:]))
    return Profile(
        num_steps=steps, parameters=parameter_count(model), connection_sparsity=connection_sparsity(model),
        footprint_bytes=footprint_bytes(model), dense_macs=dense, synaptic_operations=ops,
        synaptic_operations_per_step=ops_per_step, activation_sparsity=sparsity,
        membrane_updates=updates,
        energy_float32=energy_estimate(ops["effective_macs"], ops["effective_acs"], dense["as_executed"], "float32"),
        energy_int8=energy_estimate(ops["effective_macs"], ops["effective_acs"], dense["as_executed"], "int8"),
        num_samples=samples,
    )


def _profile_dense_model(model: nn.Module, samples: int) -> Profile:
    macs = int(model.macs_per_sample())
    ops = {"effective_macs": macs, "effective_acs": 0, "dense": macs, "per_layer": {}}
    return Profile(
        num_steps=1, parameters=parameter_count(model), connection_sparsity=connection_sparsity(model),
        footprint_bytes=footprint_bytes(model),
        dense_macs={"as_executed": macs, "per_step": macs, "flops_as_executed": 2 * macs, "per_layer": {}},
        synaptic_operations=ops, synaptic_operations_per_step=ops,
        activation_sparsity={"overall": 0.0, "per_layer": {}}, membrane_updates=0,
        energy_float32=energy_estimate(macs, 0, macs, "float32"), energy_int8=energy_estimate(macs, 0, macs, "int8"),
        num_samples=samples,
    )


def _accumulate(totals: dict | None, ops: dict, count: int) -> dict:
    """Sum per-sample numbers weighted by batch size (layers included)."""
    scaled = {k: v * count for k, v in ops.items() if k != "per_layer"}
    scaled["per_layer"] = {name: {"kind": row["kind"], "effective": row["effective"] * count,
                                  "dense": row["dense"] * count} for name, row in ops["per_layer"].items()}
    if totals is None:
        return scaled
    for key in ("effective_macs", "effective_acs", "dense"):
        totals[key] += scaled[key]
    for name, row in scaled["per_layer"].items():
        totals["per_layer"][name]["effective"] += row["effective"]
        totals["per_layer"][name]["dense"] += row["dense"]
    return totals


def _average(totals: dict, samples: int) -> dict:
    result = {k: totals[k] / samples for k in ("effective_macs", "effective_acs", "dense")}
    result["per_layer"] = {name: {"kind": row["kind"], "effective": row["effective"] / samples,
                                  "dense": row["dense"] / samples} for name, row in totals["per_layer"].items()}
    return result


# --------------------------------------------------------------------------- NeuroBench interoperability


def snntorch_sequential(model: nn.Module) -> nn.Sequential:
    """A step-by-step ``nn.Sequential`` twin of a spiking spec model (copied weights), for NeuroBench.

    Built the way NeuroBench's snntorch examples are: layers and ``snntorch.Leaky(init_hidden=True)``
    neurons in order, the last neuron with ``output=True``; one call is one time step. Wrap it in
    ``neurobench.models.SNNTorchModel`` and feed ``[B, T, ...]`` inputs.
    """
    import copy

    import snntorch

    if not is_spiking(model):
        raise ValueError("snntorch_sequential needs a spiking model")
    layers = []
    blocks = list(model.blocks)
    for index, block in enumerate(blocks):
        layers.extend(copy.deepcopy(m) for m in (block.synapse, block.pool) if not isinstance(m, nn.Identity))
        layers.append(block.activation.snntorch_equivalent(init_hidden=True, output=index == len(blocks) - 1))
    return nn.Sequential(*layers).eval()


# --------------------------------------------------------------------------- metrics by name


@dataclass(frozen=True)
class Metric:
    """A named metric. kind "static": ``compute(model)``; kind "workload":
    ``compute(activity, samples)`` on the layers' recorded inputs and outputs (:func:`record_activity`),
    a value per sample."""

    name: str
    kind: str
    compute: Callable


METRICS: dict[str, Metric] = {}


def register_metric(name: str, kind: str) -> Callable:
    """Decorator: make a metric available by ``name`` to :func:`compute_metrics` (NeuroBench's split
    into static and workload metrics)."""
    if kind not in ("static", "workload"):
        raise ValueError(f"metric {name!r}: kind must be 'static' or 'workload', got {kind!r}")

    def register(compute: Callable) -> Callable:
        METRICS[name] = Metric(name, kind, compute)
        return compute

    return register


def compute_metrics(model: nn.Module, x: torch.Tensor | None = None, names: list[str] | None = None) -> dict:
    """``{name: value}`` of the registered metrics ``names`` (default: all) on samples ``x [N, C, H, W]``
    (needed by workload metrics; the model runs once, every workload metric reads that run)."""
    names = list(METRICS) if names is None else names
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; registered: {', '.join(sorted(METRICS))}")
    workload = [name for name in names if METRICS[name].kind == "workload"]
    if workload and x is None:
        raise ValueError(f"workload metrics {', '.join(workload)} need samples x")
    activity = record_activity(model, x) if workload else None
    return {name: METRICS[name].compute(model) if METRICS[name].kind == "static"
            else METRICS[name].compute(activity, len(x)) for name in names}


register_metric("parameter_count", "static")(parameter_count)
register_metric("connection_sparsity", "static")(connection_sparsity)
register_metric("footprint_bytes", "static")(lambda model: footprint_bytes(model)["float32"])
register_metric("activation_sparsity", "workload")(lambda activity, samples: activation_sparsity(activity)["overall"])
register_metric("synaptic_operations", "workload")(
    lambda activity, samples: {key: value for key, value in synaptic_operations(activity, samples).items()
                               if key != "per_layer"})
register_metric("membrane_updates", "workload")(lambda activity, samples: membrane_updates(activity))
