"""NeuroBench's own ``Benchmark`` on a trained checkpoint, next to scnn's metrics: :func:`run_neurobench`.

The model NeuroBench runs is the checkpoint's snntorch twin (:func:`scnn.metrics.snntorch_sequential`: the
same weights, ``snntorch.Leaky`` neurons, one call per step) on the checkpoint's test split, fed as
``[B, T, C, H, W]`` (the static input repeated over the T steps, NeuroBench's convention; scnn runs the
first synapse once, which changes no spike). Its accuracy uses scnn's readout (membrane or spike count
summed over the steps, then argmax), so it is comparable with ``scnn evaluate``.

Footprint of a quantised model: NeuroBench's ``Footprint`` counts the bytes of the torch tensors (float32).
Given the integer artefact, :func:`integer_footprint_bytes` counts what an integer port stores: weights
packed at ``weight_bits`` (ceil(n * bits / 8) bytes per layer), int32 biases, and per channel one int16
threshold, one byte of leak shift (or an int16 leak multiplier) and one byte of requantisation shift.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from scnn.io import write_json

METRICS = ("Footprint", "ConnectionSparsity", "ActivationSparsity", "SynapticOperations", "ClassificationAccuracy")


def integer_footprint_bytes(description: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Bytes an integer port stores for the artefact (see the module docstring), in total and per part."""
    weights = biases = neuron = 0
    for index, entry in enumerate(description["layers"]):
        prefix = f"layer{index}"
        weights += math.ceil(arrays[f"{prefix}.weight"].size * entry["weight_bits"] / 8)
        channels = arrays[f"{prefix}.bias"].size
        biases += 4 * channels
        activation = entry["activation"]
        if activation["type"] == "lif":
            leak = arrays[f"{prefix}.leak_shift" if activation["leak"] == "shift" else f"{prefix}.leak_multiplier"]
            neuron += 2 * arrays[f"{prefix}.threshold"].size + (1 if activation["leak"] == "shift" else 2) * leak.size
        neuron += channels  # requantisation shift, one byte per output channel
    return {"total": weights + biases + neuron, "weights": weights, "biases": biases, "neuron_constants": neuron}


class _ReadoutModel:
    """Wraps NeuroBench's SNNTorchModel so that its output is scnn's logits ``[B, classes]`` (the readout summed
    over steps), keeping NeuroBench's hooks on the snntorch layers for the workload metrics."""

    @staticmethod
    def build(net, readout: str):
        import snntorch.utils
        from neurobench.models import SNNTorchModel

        class ReadoutModel(SNNTorchModel):
            def __call__(self, data):
                snntorch.utils.reset(self.net)
                total = 0
                for step in range(data.shape[1]):
                    spikes, membrane = self.net(data[:, step, ...])
                    total = total + (membrane if readout == "membrane" else spikes)
                return total

        return ReadoutModel(net)


@torch.no_grad()
def run_neurobench(checkpoint: str | Path, out_dir: str | Path | None = None, data_dir: str | None = None,
                   integer_artefact: str | Path | None = None, max_samples: int | None = None,
                   batch_size: int = 50, progress: bool = False) -> dict:
    """Run NeuroBench's Benchmark on the checkpoint's test split and scnn's own metrics beside it.

    Writes ``neurobench.json`` into out_dir (default: the checkpoint's folder, next to its results.json) with
    {"neurobench": NeuroBench's result, "scnn": scnn's numbers for the same quantities, "samples", ...}.
    integer_artefact: an ``integer`` stem from scnn quantize: adds ``integer_footprint_bytes``.
    """
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations
    from torch.utils.data import DataLoader, TensorDataset

    from scnn.data.prepare import checkpoint_data
    from scnn.metrics import (activation_sparsity, connection_sparsity, footprint_bytes, is_spiking,
                              record_activity, snntorch_sequential, synaptic_operations)
    from scnn.train.evaluate import evaluate, load_trained_model

    checkpoint = Path(checkpoint)
    model, saved = load_trained_model(checkpoint)
    if not is_spiking(model) or not hasattr(model, "blocks"):
        raise ValueError(f"{checkpoint}: scnn neurobench runs spiking spec nets (NeuroBench's snntorch wrapper); "
                         f"this is {type(model).__name__}")
    data = checkpoint_data(saved, {"data_dir": data_dir}, progress)
    x, y = data.test
    if max_samples:
        x, y = x[:max_samples], y[:max_samples]
    steps = model.config.num_steps
    loader = DataLoader(TensorDataset(x.unsqueeze(1).repeat(1, steps, 1, 1, 1), y), batch_size=batch_size)
    net = _ReadoutModel.build(snntorch_sequential(model), model.config.readout)
    benchmark = Benchmark(net, loader, [], [lambda logits: logits.argmax(1)],
                          [[Footprint, ConnectionSparsity],
                           [ClassificationAccuracy, ActivationSparsity, SynapticOperations]])
    reference = benchmark.run(quiet=True)
    activity = record_activity(model, x)
    synops = synaptic_operations(activity, len(x), first_layer_steps=steps)  # NeuroBench's convention
    ours = {"accuracy": evaluate(model, x, y, num_classes=len(data.class_names))["accuracy"],
            "connection_sparsity": connection_sparsity(model), "footprint_bytes": footprint_bytes(model),
            "activation_sparsity": activation_sparsity(activity)["overall"],
            "effective_acs": synops["effective_acs"], "effective_macs": synops["effective_macs"],
            "dense": synops["dense"]}
    result = {"checkpoint": str(checkpoint), "samples": int(len(x)), "num_steps": steps,
              "neurobench": {key: _plain(value) for key, value in reference.items()}, "scnn": ours,
              "input_convention": "static input repeated over num_steps as [B, T, C, H, W]"}
    if integer_artefact is not None:
        from scnn.quant.integer import load_integer

        result["integer_footprint_bytes"] = integer_footprint_bytes(*load_integer(integer_artefact))
    out = Path(out_dir) if out_dir is not None else checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "neurobench.json", result)
    return result


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (torch.Tensor, np.generic)):
        return value.item()
    return value
