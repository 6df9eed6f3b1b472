"""Sparse training products of spike-fed dense layers (scnn.engine.synapses): the same values and
gradients as the dense path (float32 summation order aside), taken only where they apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scnn.engine import kernels as spike_kernels
from scnn.engine import synapses
from scnn.engine.policy import sparse_training
from scnn.models import create_model

pytestmark = pytest.mark.skipif(not spike_kernels.available(), reason="the sparse products need numba")


def _spikes(rows: int, inputs: int, density: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, inputs, generator=generator) < density).float()


@pytest.mark.parametrize("rows, inputs, density", [(7, 33, 0.2), (40, 1000, 0.03), (5, 16, 0.0), (6, 9, 1.0)])
def test_spike_index_lists_exactly_the_nonzero_entries(rows, inputs, density):
    spikes = _spikes(rows, inputs, density)
    spikes[min(2, rows - 1)] = 0  # an empty row in the middle
    row_starts, columns = synapses.spike_index(spikes)
    nonzero = spikes.nonzero()
    assert row_starts.dtype == columns.dtype == torch.int32
    assert row_starts.tolist() == [0] + torch.cumsum(torch.bincount(nonzero[:, 0], minlength=rows), 0).tolist()
    assert columns.tolist() == nonzero[:, 1].tolist()  # row by row, ascending columns


def test_spike_index_gives_up_above_the_density():
    spikes = _spikes(50, 400, 0.2)
    assert synapses.spike_index(spikes, max_density=0.1) is None
    assert synapses.spike_index(spikes, max_density=0.3) is not None


def _run(spikes, linear, grad_output, input_grad: bool):
    for parameter in linear.parameters():
        parameter.grad = None
    x = spikes.clone().requires_grad_(input_grad)
    output = synapses.SpikeLinearFunction.apply(x, linear.weight, linear.bias)
    output.backward(grad_output)
    return (output.detach(), linear.weight.grad.clone(), None if linear.bias is None else linear.bias.grad.clone(),
            x.grad.clone() if input_grad else None)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("density", [0.004, 0.05])
def test_sparse_products_equal_the_dense_ones(monkeypatch, bias, density):
    torch.manual_seed(0)
    linear = nn.Linear(700, 96, bias=bias)
    spikes, grad_output = _spikes(130, 700, density), torch.randn(130, 96)
    calls = []
    sparse_gradient = synapses.sparse_weight_gradient
    monkeypatch.setattr(synapses, "sparse_weight_gradient", lambda *a: calls.append(1) or sparse_gradient(*a))
    with sparse_training(enabled=False):
        dense = _run(spikes, linear, grad_output, input_grad=True)
    with sparse_training(max_density=0.1, min_rows=0):
        synapses.SPARSE_TRAINING["min_weights"] = 0
        sparse = _run(spikes, linear, grad_output, input_grad=True)
    assert calls == [1], "the sparse weight gradient ran once"
    for name, a, b in zip(("output", "weight gradient", "bias gradient", "input gradient"), dense, sparse):
        if a is None:
            assert b is None
            continue
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
    assert synapses.SPARSE_TRAINING["min_weights"] == 1 << 16, "sparse_training() restores every setting"


def test_dense_path_is_kept_where_sparse_does_not_pay(monkeypatch):
    """Above the density, below the fewest rows or weights, or switched off: the dense products run."""
    calls = []
    monkeypatch.setattr(synapses, "sparse_weight_gradient", lambda *a: calls.append(1))
    torch.manual_seed(0)
    big, small = nn.Linear(700, 128), nn.Linear(64, 10)
    cases = [(big, _spikes(1100, 700, 0.3), {}),                          # too dense
             (big, _spikes(200, 700, 0.01), {}),                          # too few rows (T * B)
             (small, _spikes(1100, 64, 0.01), {"min_rows": 0}),           # too small a layer
             (big, _spikes(1100, 700, 0.01), {"enabled": False})]         # switched off
    for linear, spikes, settings in cases:
        with sparse_training(**settings):
            dense_output = _run(spikes, linear, torch.randn(len(spikes), linear.out_features), input_grad=False)[0]
        torch.testing.assert_close(dense_output, torch.addmm(linear.bias, spikes, linear.weight.t()).detach())
    assert calls == []


def test_sparse_training_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_density"):
        with sparse_training(max_density=1.5):
            pass
    with pytest.raises(ValueError, match="min_rows"):
        with sparse_training(min_rows=-1):
            pass


def test_model_a_gradients_match_with_and_without_sparse_training(monkeypatch):
    """Model A's 12,544 -> 128 layer is fed by spikes at a few percent: its training step gives the
    same loss and parameter gradients with the sparse products as with the dense ones."""
    calls = []
    sparse_gradient = synapses.sparse_weight_gradient
    monkeypatch.setattr(synapses, "sparse_weight_gradient", lambda *a: calls.append(1) or sparse_gradient(*a))
    torch.manual_seed(0)
    model = create_model("model_a", num_steps=4)
    inputs, labels = torch.randn(6, 1, 32, 32) * 2, torch.randint(0, 10, (6,))

    def gradients(**settings):
        model.zero_grad(set_to_none=True)
        with sparse_training(**settings):
            loss = nn.functional.cross_entropy(model(inputs).logits, labels)
            loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    dense_loss, dense = gradients(enabled=False)
    sparse_loss, sparse = gradients(max_density=0.5, min_rows=0)
    assert calls, "the sparse path ran in the model"
    torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-5, atol=1e-6)
    assert dense.keys() == sparse.keys()
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
