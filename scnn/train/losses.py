"""Loss functions on a model's :class:`~scnn.models.NetOutput`, chosen by name.

ce_membrane: cross-entropy on the classifier membrane at every step, summed over
    the T steps (the reference paper's loss); for a non-spiking net, plain
    cross-entropy on the logits.
ce_mean_membrane: cross-entropy on the classifier membrane averaged over the T steps (the time-mean
    readout of Cramer et al. 2020 and Bittar & Garner 2022 for SHD and Speech Commands): one answer per
    word, not one per step, so a frame-by-frame model is not asked to name the word in the frames
    before it is spoken; for a non-spiking net, plain cross-entropy on the logits.
ce_rate, ce_count, mse_count: snntorch's spike-based losses
    (``snntorch.functional.ce_rate_loss``, ``ce_count_loss``, ``mse_count_loss``
    with correct/incorrect firing rates 0.8/0.2).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES = ("ce_membrane", "ce_mean_membrane", "ce_rate", "ce_count", "mse_count")


def make_loss(name: str = "ce_membrane") -> Callable:
    """A function ``loss(output, targets [B]) -> scalar tensor``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
    if name == "ce_membrane":
        return _ce_membrane
    if name == "ce_mean_membrane":
        return _ce_mean_membrane
    import snntorch.functional as SF

    spike_loss = {
        "ce_rate": SF.ce_rate_loss(),
        "ce_count": SF.ce_count_loss(),
        "mse_count": SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2),
    }[name]

    def loss(output, targets: torch.Tensor) -> torch.Tensor:
        if output.spikes is None:
            raise ValueError(f"loss {name!r} needs a spiking model; use ce_membrane for non-spiking nets")
        return spike_loss(output.spikes, targets)

    return loss


def _ce_membrane(output, targets: torch.Tensor) -> torch.Tensor:
    if output.membrane is None:
        return F.cross_entropy(output.logits, targets)
    steps = output.membrane.shape[0]
    # Sum over steps of the per-step mean cross-entropy, in one call.
    return F.cross_entropy(output.membrane.flatten(0, 1), targets.repeat(steps)) * steps


def _ce_mean_membrane(output, targets: torch.Tensor) -> torch.Tensor:
    if output.membrane is None:
        return F.cross_entropy(output.logits, targets)
    return F.cross_entropy(output.membrane.mean(0), targets)
