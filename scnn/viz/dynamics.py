"""What a trained network does on one sample: spikes and membranes per layer, for figures.

Spikes and firing rates come from :func:`scnn.metrics.record_activity` (the pass that
measures activation sparsity); membranes are read from every LIF layer's output with a
forward hook, since the models return only the classifier's. Every tensor is one
sample's, with the layer's neurons flattened: ``[T, neurons]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scnn.metrics import firing_rates, record_activity
from scnn.models.spec_net import parse_spec
from scnn.neurons.base import SpikingNeuron


@dataclass
class SampleDynamics:
    """One sample through a spiking model; every dict is keyed by a layer label (``"1: 6C3"``).

    spikes: 0/1 ``[T, neurons]``; membranes: membrane potential U ``[T, neurons]`` (same units
    as the threshold); thresholds: U_thr per layer (the mean if per channel); firing_rates:
    spikes per neuron per step ``[neurons]``; logits ``[classes]``.
    """

    spikes: dict[str, torch.Tensor]
    membranes: dict[str, torch.Tensor]
    thresholds: dict[str, float]
    firing_rates: dict[str, torch.Tensor]
    logits: torch.Tensor


def layer_labels(model: nn.Module) -> list[str]:
    """``"1: 6C3"``, ``"2: 128FC"``, ... for each block of a spec model (pooling folded into its layer)."""
    layers = parse_spec(model.config.spec)
    labels, index = [], 0
    while index < len(layers):
        layer, text = layers[index], ""
        if layer.kind == "conv":
            text = f"{layer.size}C{layer.kernel}"
        else:
            is_classifier = index == len(layers) - 1
            text = f"{model.num_classes if is_classifier else layer.size}FC"
        if index + 1 < len(layers) and layers[index + 1].kind == "pool":
            text += f"-P{layers[index + 1].kernel}"
            index += 1
        labels.append(f"{len(labels) + 1}: {text}")
        index += 1
    return labels


@torch.no_grad()
def record_sample(model: nn.Module, x: torch.Tensor) -> SampleDynamics:
    """Run a spiking spec model on one sample ``x [C, H, W]`` (or ``[1, C, H, W]``) and record every layer."""
    if not getattr(model.config, "spiking", False):
        raise ValueError("record_sample needs a spiking model (the control CNN and the SSM have no spikes)")
    x = x.unsqueeze(0) if x.dim() == 3 else x[:1]
    x = x.to(next(model.parameters()).device)
    labels = layer_labels(model)
    membranes, hooks = {}, []
    for label, block in zip(labels, model.blocks):
        if isinstance(block.activation, SpikingNeuron):
            def keep(module, inputs, output, label=label):
                membranes[label] = output[1][:, 0].flatten(1).cpu()  # output = (spikes, membranes) [T, B, ...]
            hooks.append(block.activation.register_forward_hook(keep))
    try:
        activity = record_activity(model, x)
    finally:
        for hook in hooks:
            hook.remove()
    label_of = {layer.name: label for layer, label in zip(activity, labels)}
    spikes = {label_of[layer.name]: layer.activation_output[:, 0].flatten(1).cpu() for layer in activity}
    rates = {label_of[name]: rate.cpu() for name, rate in firing_rates(activity).items()}
    thresholds = {}  # a spiking layer's mean threshold, where its neuron has one
    for label, block in zip(labels, model.blocks):
        if isinstance(block.activation, SpikingNeuron) and "threshold" in block.activation.neuron_parameters():
            thresholds[label] = float(block.activation.neuron_parameters()["threshold"].float().mean())
    readout = membranes if model.config.readout == "membrane" else spikes
    logits = readout[labels[-1]].sum(0)  # as SpecNet's readout: summed over steps
    return SampleDynamics(spikes, membranes, thresholds, rates, logits)


