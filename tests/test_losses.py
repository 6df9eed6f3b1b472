"""Losses by name on a NetOutput: what each one asks of the readout membrane [T, B, classes]."""

import pytest
import torch
import torch.nn.functional as F

from scnn.models.outputs import NetOutput
from scnn.train.losses import LOSSES, make_loss


def _output(steps=6, batch=4, classes=5, seed=0):
    membrane = torch.randn(steps, batch, classes, generator=torch.Generator().manual_seed(seed))
    return NetOutput(logits=membrane.sum(0), spikes=None, membrane=membrane)


def test_ce_membrane_sums_the_cross_entropy_of_every_step():
    output, targets = _output(), torch.tensor([0, 1, 2, 3])
    expected = sum(F.cross_entropy(output.membrane[t], targets) for t in range(6))
    assert torch.allclose(make_loss("ce_membrane")(output, targets), expected, atol=1e-5)


def test_ce_mean_membrane_is_one_answer_from_the_time_mean_readout():
    output, targets = _output(), torch.tensor([4, 0, 1, 1])
    expected = F.cross_entropy(output.membrane.mean(0), targets)
    assert torch.allclose(make_loss("ce_mean_membrane")(output, targets), expected)
    # early steps that carry nothing (a word not yet spoken) are averaged in, not each asked for the word
    quiet = output.membrane.clone()
    quiet[:3] = 0
    informative = NetOutput(logits=quiet.sum(0), spikes=None, membrane=quiet)
    per_step = make_loss("ce_membrane")(informative, targets)
    assert per_step >= 3 * torch.log(torch.tensor(5.0)) - 1e-5  # three uniform steps cost 3 ln 5 each time
    plain = NetOutput(logits=output.logits, spikes=None, membrane=None)  # a non-spiking net: its logits
    assert torch.allclose(make_loss("ce_mean_membrane")(plain, targets), F.cross_entropy(output.logits, targets))


def test_unknown_losses_are_named():
    assert "ce_mean_membrane" in LOSSES
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        make_loss("nope")
