"""Event-driven training products of spike-fed convolutions (scnn.engine.sparse_conv through
scnn.engine.synapses.SpikeConv2dFunction): the same output and gradients as the dense convolution
(float32 summation order aside), taken only where the policy lets them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scnn.engine import kernels as spike_kernels
from scnn.engine import sparse_conv, synapses
from scnn.engine.policy import sparse_conv_training, sparse_training
from scnn.models import create_model

pytestmark = pytest.mark.skipif(not spike_kernels.available(), reason="the event-driven products need numba")

ON = {"max_density": 1.0, "min_rows": 0}  # every density, every row count


def _spikes(shape, density: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=generator) < density).float()


@pytest.fixture
def calls(monkeypatch):
    """Counts of the event-driven forward and weight gradient that ran."""
    counted = {"forward": 0, "weight_gradient": 0}
    forward, gradient = sparse_conv.sparse_conv_forward, sparse_conv.sparse_conv_weight_gradient

    def counting_forward(*args):
        counted["forward"] += 1
        return forward(*args)

    def counting_gradient(*args):
        counted["weight_gradient"] += 1
        return gradient(*args)

    monkeypatch.setattr(sparse_conv, "sparse_conv_forward", counting_forward)
    monkeypatch.setattr(sparse_conv, "sparse_conv_weight_gradient", counting_gradient)
    return counted


def _run(conv: nn.Conv2d, spikes: torch.Tensor, grad_output: torch.Tensor, input_grad: bool = True):
    """(output, weight gradient, bias gradient, input gradient) of SpikeConv2dFunction."""
    conv.zero_grad(set_to_none=True)
    x = spikes.clone().requires_grad_(input_grad)
    output = synapses.SpikeConv2dFunction.apply(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                                                conv.groups)
    output.backward(grad_output)
    return (output.detach(), conv.weight.grad.clone(), None if conv.bias is None else conv.bias.grad.clone(),
            x.grad.clone() if input_grad else None)


def _assert_same(sparse, dense, names=("output", "weight gradient", "bias gradient", "input gradient")):
    """Within 1e-5 relative to each tensor's largest magnitude (float32 summation order)."""
    for name, a, b in zip(names, dense, sparse):
        if a is None:
            assert b is None, name
            continue
        scale = max(float(a.abs().max()), 1.0)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


# Model A's spike-fed 16C3 on 6 x 30 x 30 maps, then padding, stride, dilation and a non-square kernel.
LAYERS = [
    dict(in_channels=6, out_channels=16, kernel_size=3, size=(30, 30)),
    dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, stride=2, size=(11, 9)),
    dict(in_channels=4, out_channels=7, kernel_size=(3, 2), padding=(2, 1), stride=(1, 2), dilation=(2, 1),
         size=(10, 12)),
    dict(in_channels=2, out_channels=3, kernel_size=1, size=(5, 5), bias=False),
]


@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 1.0])
@pytest.mark.parametrize("layer", LAYERS, ids=["model_a_16c3", "pad1_stride2", "dilated_rect", "1x1_nobias"])
def test_event_driven_products_equal_the_dense_convolution(calls, layer, density):
    layer = dict(layer)
    height, width = layer.pop("size")
    torch.manual_seed(0)
    conv = nn.Conv2d(**layer)
    spikes = _spikes((12, conv.in_channels, height, width), density)
    spikes[3] = 0  # a silent row among active ones
    grad_output = torch.randn_like(conv(spikes))
    with sparse_conv_training(enabled=False):
        dense = _run(conv, spikes, grad_output)
    with sparse_conv_training(**ON):
        sparse = _run(conv, spikes, grad_output)
    assert calls == {"forward": 1, "weight_gradient": 1}, "both event-driven products ran once"
    _assert_same(sparse, dense)


def test_frozen_input_and_frozen_weight(calls):
    """Only the gradients asked for: no input gradient for an input without one, no weight gradient
    (and no event-driven weight pass) for a frozen weight."""
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 16, 3)
    spikes = _spikes((8, 6, 30, 30), 0.05)
    grad_output = torch.randn(8, 16, 28, 28)
    with sparse_conv_training(enabled=False):
        dense = _run(conv, spikes, grad_output, input_grad=False)
    with sparse_conv_training(**ON):
        sparse = _run(conv, spikes, grad_output, input_grad=False)
    _assert_same(sparse, dense)
    assert sparse[3] is None
    conv.zero_grad(set_to_none=True)
    conv.weight.requires_grad_(False)
    x = spikes.clone().requires_grad_(True)
    with sparse_conv_training(**ON):
        synapses.SpikeConv2dFunction.apply(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                                           1).backward(grad_output)
    assert conv.weight.grad is None and x.grad is not None
    assert calls["weight_gradient"] == 1, "the frozen weight took no weight gradient pass"


def test_policy_keeps_the_dense_path_where_it_says(calls):
    """Switched off, above the density, below the fewest rows, grouped: the dense convolution;
    a forward threshold below the spikes' density: dense forward beside the event-driven weight gradient."""
    torch.manual_seed(2)
    conv, grouped = nn.Conv2d(6, 16, 3), nn.Conv2d(6, 16, 3, groups=2)
    sparse_spikes, dense_spikes = _spikes((40, 6, 30, 30), 0.02), _spikes((40, 6, 30, 30), 0.3)
    cases = [(conv, sparse_spikes, {"enabled": False, **ON}),
             (conv, dense_spikes, {"max_density": 0.1, "min_rows": 0}),
             (conv, sparse_spikes, {"max_density": 1.0, "min_rows": 41}),
             (grouped, sparse_spikes, ON)]
    for layer, spikes, settings in cases:
        with sparse_conv_training(**settings):
            output = _run(layer, spikes, torch.randn(40, 16, 28, 28))[0]
        torch.testing.assert_close(output, layer(spikes).detach())
    assert calls == {"forward": 0, "weight_gradient": 0}
    with sparse_conv_training(max_density=0.1, max_forward_density=0.01, min_rows=0):
        _run(conv, sparse_spikes, torch.randn(40, 16, 28, 28))
    assert calls == {"forward": 0, "weight_gradient": 1}
    with sparse_conv_training(max_density=0.1, max_forward_density=0.05, min_rows=0):
        _run(conv, sparse_spikes, torch.randn(40, 16, 28, 28))
    assert calls == {"forward": 1, "weight_gradient": 2}


def test_sparse_conv_training_restores_and_rejects_bad_settings():
    before = dict(synapses.SPARSE_CONV_TRAINING)
    with sparse_conv_training(enabled=True, max_density=0.2, min_rows=7, max_forward_density=0.1):
        assert synapses.SPARSE_CONV_TRAINING == {"enabled": True, "max_density": 0.2, "max_forward_density": 0.1,
                                                 "min_rows": 7}
    assert synapses.SPARSE_CONV_TRAINING == before
    for settings, name in (({"max_density": 1.5}, "max_density"),
                           ({"max_forward_density": -0.1}, "max_forward_density"), ({"min_rows": -1}, "min_rows")):
        with pytest.raises(ValueError, match=name):
            with sparse_conv_training(**settings):
                pass
    assert synapses.SPARSE_CONV_TRAINING == before


def test_model_a_gradients_match_with_and_without_event_driven_convolution(calls):
    """Model A's 16C3 is fed by the first LIF's spikes: its training step gives the same loss and
    every parameter gradient with the event-driven convolution as with the dense one (the dense
    layers' sparse products off on both sides, then on with both)."""
    torch.manual_seed(0)
    model = create_model("model_a", num_steps=4)
    inputs, labels = torch.randn(6, 1, 32, 32) * 2, torch.randint(0, 10, (6,))

    def gradients(conv_settings, linear_enabled=False):
        model.zero_grad(set_to_none=True)
        with sparse_conv_training(**conv_settings), sparse_training(enabled=linear_enabled, max_density=0.5,
                                                                    min_rows=0):
            loss = nn.functional.cross_entropy(model(inputs).logits, labels)
            loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    dense_loss, dense = gradients({"enabled": False})
    for linear_enabled in (False, True):
        sparse_loss, sparse = gradients(ON, linear_enabled)
        torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-5, atol=1e-6)
        assert dense.keys() == sparse.keys()
        for name in dense:
            torch.testing.assert_close(sparse[name], dense[name], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    assert calls == {"forward": 2, "weight_gradient": 2}, "the event-driven convolution ran in both sparse steps"


def test_output_shape_matches_torch():
    for layer in LAYERS:
        layer = dict(layer)
        height, width = layer.pop("size")
        conv = nn.Conv2d(**layer)
        shape = (2, conv.in_channels, height, width)
        assert sparse_conv.output_shape(shape, conv.weight.shape, conv.stride, conv.padding,
                                        conv.dilation) == tuple(conv(torch.zeros(shape)).shape)


def test_crossover_benchmark_writes_its_table_and_restores_the_policy(tmp_path):
    """benchmarks/bench_engine.py --crossover-conv: one row per (rows, density), every path timed, the
    table reads back, and the settings it moved are put back (the timing itself is the lead's to run)."""
    import importlib.util
    from pathlib import Path

    from scnn.result_tables import load_table, write_table

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"
    spec = importlib.util.spec_from_file_location("bench_engine_for_conv", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    before = dict(synapses.SPARSE_CONV_TRAINING)
    rows = bench.sparse_conv_crossover(repeats=1, row_counts=(4, 8), densities=(0.0, 0.05))
    assert synapses.SPARSE_CONV_TRAINING == before
    assert [(row["rows"], row["density"]) for row in rows] == [(4, 0.0), (4, 0.05), (8, 0.0), (8, 0.05)]
    assert all(row[key] > 0 for row in rows for key in ("dense_ms", "sparse_ms", "sparse_gradient_only_ms", "speedup"))
    written = write_table(rows, tmp_path / "bench_engine_conv_crossover.csv", "engine_conv_crossover", {"argv": []})
    assert load_table(written, "engine_conv_crossover").rows == rows


def test_default_policy_follows_the_measured_thresholds(calls):
    """With the shipped settings: event-driven forward and weight gradient at 1 %, only the weight
    gradient at 5 %, neither at Model A's 15-18 % nor below the fewest rows (docs/engine.md)."""
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 16, 3)
    rows = synapses.SPARSE_CONV_TRAINING["min_rows"]
    expected = [(rows, 0.01, {"forward": 1, "weight_gradient": 1}),
                (rows, 0.05, {"forward": 1, "weight_gradient": 2}),
                (rows, 0.17, {"forward": 1, "weight_gradient": 2}),
                (rows - 1, 0.01, {"forward": 1, "weight_gradient": 2})]
    for count, density, after in expected:
        spikes = _spikes((count, 6, 30, 30), density, seed=count)
        output = _run(conv, spikes, torch.randn(count, 16, 28, 28), input_grad=False)[0]
        torch.testing.assert_close(output, conv(spikes).detach(), rtol=1e-5, atol=1e-5)
        assert calls == after, (count, density)


@pytest.mark.parametrize("blocks", [2, 5])
def test_row_blocks_of_several_threads_give_the_same_values(monkeypatch, blocks):
    """The kernels split the rows into one block per thread (9 rows: 5 + 4, or 2 + 2 + 2 + 2 + 1),
    each with its own buffers and float64 sums: the same output and gradients as the dense convolution."""
    monkeypatch.setattr(sparse_conv, "_blocks", lambda rows: blocks)
    torch.manual_seed(4)
    conv = nn.Conv2d(6, 16, 3, padding=1)
    spikes = _spikes((9, 6, 30, 30), 0.05)
    grad_output = torch.randn(9, 16, 30, 30)
    with sparse_conv_training(enabled=False):
        dense = _run(conv, spikes, grad_output)
    with sparse_conv_training(**ON):
        sparse = _run(conv, spikes, grad_output)
    _assert_same(sparse, dense)


def test_non_contiguous_spikes_are_indexed_in_logical_order(calls):
    """Spikes in channels-last memory (or any strided view) index as [R, C*H*W] in logical order."""
    torch.manual_seed(5)
    conv = nn.Conv2d(6, 16, 3)
    spikes = _spikes((10, 6, 30, 30), 0.05).to(memory_format=torch.channels_last)
    grad_output = torch.randn(10, 16, 28, 28)
    with sparse_conv_training(enabled=False):
        dense = _run(conv, spikes.contiguous(), grad_output)
    with sparse_conv_training(**ON):
        sparse = _run(conv, spikes, grad_output)
    assert calls == {"forward": 1, "weight_gradient": 1}
    _assert_same(sparse, dense)
