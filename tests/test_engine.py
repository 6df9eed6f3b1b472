"""The fast engine against the step-by-step snntorch reference: same spikes, membranes and gradients."""

import pytest
import torch

from scnn.models import create_model
from scnn.neurons import LIF, FusedLeakySequence, reset_net
from scnn.reference import ReferenceNet


class FastSigmoidKeepingDtype(torch.autograd.Function):
    """snntorch's FastSigmoid (surrogate.py) verbatim, except that spikes keep the input's dtype:
    snntorch returns float32 spikes, which stops a float64 network at the next layer."""

    @staticmethod
    def forward(ctx, input_, slope):
        ctx.save_for_backward(input_)
        ctx.slope = slope
        return (input_ > 0).to(input_.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (input_,) = ctx.saved_tensors
        return grad_output.clone() / (ctx.slope * torch.abs(input_) + 1.0) ** 2, None


def in_float64(model):
    """Convert a model and its snntorch neurons' surrogate to float64."""
    model.double()
    for layer in model.lif_layers():
        layer.leaky.spike_grad = lambda x, slope=layer.slope: FastSigmoidKeepingDtype.apply(x, slope)


def gradients(model, output_fn, x):
    model.zero_grad(set_to_none=True)
    output = output_fn(x)
    # A loss that touches spikes and membranes, like ce_membrane plus a rate term.
    loss = output.membrane.square().mean() + output.spikes.sum() * 0.01 + output.membrane[-1].sum()
    loss.backward()
    return output, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["model_a", "model_b", "4C3-P2-8C3-32FC-10FC"])
@pytest.mark.parametrize("steps", [1, 5, 25])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_engine_matches_snntorch_reference(name, steps, reset, per_channel):
    torch.manual_seed(steps + (reset == "zero") + 10 * per_channel)
    model = create_model(name, num_steps=steps, reset_mechanism=reset, beta=0.8, threshold=0.4,
                         per_channel_beta=per_channel, learn_beta=True, learn_threshold=True)
    if per_channel:
        with torch.no_grad():
            for layer in model.lif_layers():
                layer.leaky.beta.uniform_(0.3, 0.95)
    x = torch.randn(3, 1, 32, 32) * 2
    with torch.no_grad():  # float32, as trained: identical spikes, membranes within 1e-5
        assert model(x, record=True).layer_spikes[0].sum() > 0, "the test must exercise spikes and resets"
        fast, reference = model(x), ReferenceNet(model)(x)
    assert torch.equal(fast.spikes, reference.spikes)
    assert torch.allclose(fast.membrane, reference.membrane, atol=1e-5)
    # Gradients in float64: float32 BPTT over 25 steps leaves ~1e-4 relative round-off in the
    # reference itself, which would hide (or fake) a difference in the mathematics.
    in_float64(model)
    x = x.double()
    fast, fast_grads = gradients(model, model, x)
    reference, reference_grads = gradients(model, ReferenceNet(model), x)
    assert torch.equal(fast.spikes, reference.spikes)
    assert fast_grads.keys() == reference_grads.keys()
    assert any("beta" in key for key in fast_grads) and any("threshold" in key for key in fast_grads)
    for key, reference_grad in reference_grads.items():
        error = (fast_grads[key] - reference_grad).abs().max()
        assert error <= 1e-4 * reference_grad.abs().max() + 1e-12, (key, float(error))


def test_generic_surrogate_path_matches_reference():
    torch.manual_seed(3)
    model = create_model("model_b", num_steps=5, surrogate="atan", surrogate_slope=2.0)
    assert all(layer.engine == "snntorch" for layer in model.lif_layers())
    x = torch.randn(2, 1, 32, 32) * 2
    fast, fast_grads = gradients(model, model, x)
    reference, reference_grads = gradients(model, ReferenceNet(model), x)
    assert torch.equal(fast.spikes, reference.spikes)
    for key in reference_grads:
        assert torch.allclose(fast_grads[key], reference_grads[key], rtol=1e-4, atol=1e-7), key


def test_fused_and_snntorch_engines_agree_in_the_neuron_alone():
    torch.manual_seed(4)
    current = torch.randn(12, 4, 7) * 1.5
    fused = LIF(beta=0.9, threshold=0.7, num_channels=7, learn_beta=True)
    plain = LIF(beta=0.9, threshold=0.7, num_channels=7, learn_beta=True, engine="snntorch")
    spikes_fused, membrane_fused = fused(current)
    spikes_plain, membrane_plain = plain(current)
    assert torch.equal(spikes_fused, spikes_plain) and torch.allclose(membrane_fused, membrane_plain, atol=1e-6)
    assert torch.autograd.gradcheck(
        lambda c: FusedLeakySequence.apply(c, torch.tensor(0.9, dtype=torch.double),
                                           torch.tensor(0.7, dtype=torch.double), 25.0, False)[1],
        (torch.randn(4, 3, dtype=torch.double, requires_grad=True),))


def test_beta_outside_unit_interval_gets_no_gradient_like_clamp():
    current = torch.rand(6, 2, 3)
    beta = torch.tensor(1.2, requires_grad=True)
    _, membrane = FusedLeakySequence.apply(current, beta, torch.tensor(1.0), 25.0, False)
    membrane.sum().backward()
    assert beta.grad == 0


@pytest.mark.parametrize("name", ["model_a", "model_b"])
def test_single_step_streaming_agrees_with_multi_step(name):
    torch.manual_seed(5)
    model = create_model(name, num_steps=7)
    x = torch.randn(2, 1, 32, 32) * 2
    with torch.no_grad():
        output = model(x)
        reset_net(model)
        streamed = [model.step(x) for _ in range(7)]
    assert torch.equal(torch.cat([s.spikes for s in streamed]), output.spikes)
    assert torch.allclose(torch.cat([s.membrane for s in streamed]), output.membrane, atol=1e-5)


def test_static_input_runs_the_first_layer_once():
    model = create_model("model_b", num_steps=10)
    calls = []
    model.blocks[0].synapse.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    model(torch.randn(4, 1, 32, 32))
    assert calls == [4], "once, on the batch, not on T x batch"
