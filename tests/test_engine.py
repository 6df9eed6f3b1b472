"""The fast engine against the step-by-step snntorch reference: same spikes, membranes and gradients."""

import pytest
import snntorch
import torch

from scnn.engine import active_input_linear, keep_freed_memory, sparse_inference, spike_fed_current
from scnn.models import create_model
from scnn.neurons import LIF, FusedLeakySequence, make_surrogate, reset_net
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


def assert_gradients_close(fast_grads, reference_grads, relative=1e-4):
    """Every gradient element within ``relative`` of the largest reference element of its parameter."""
    assert fast_grads.keys() == reference_grads.keys()
    for key, reference_grad in reference_grads.items():
        error = (fast_grads[key] - reference_grad).abs().max()
        assert error <= relative * reference_grad.abs().max() + 1e-12, (key, float(error))


@pytest.mark.parametrize("name", ["model_a", "model_b", "4C3-P2-8C3-32FC-10FC"])
@pytest.mark.parametrize("steps", [1, 5, 25])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_engine_matches_snntorch_reference(name, steps, reset, per_channel):
    """Spikes and membranes in float32 (as trained); gradients in float64.

    Gradients are compared in float64 because in float32 they are ill-conditioned, not
    because they differ: the engine's folded matmuls sum in another order than the
    per-step ones, the fast-sigmoid surrogate (slope 25) multiplies a 1e-7 change of a
    membrane near threshold by up to 50, and a scalar beta/threshold gradient is a sum
    of ~1e5 terms that cancel; single float32 elements then differ by ~1e-4 relative.
    The neuron's own gradients are also checked alone, at T = 25, in float64 below.
    """
    torch.manual_seed(steps + (reset == "zero") + 10 * per_channel)
    model = create_model(name, num_steps=steps, reset_mechanism=reset, beta=0.8, threshold=0.4,
                         per_channel_beta=per_channel, learn_beta=True, learn_threshold=True)
    if per_channel:
        with torch.no_grad():
            for layer in model.lif_layers():
                layer.leaky.beta.uniform_(0.3, 0.95)
    assert all(layer.engine == "fused" for layer in model.lif_layers())
    x = torch.randn(2, 1, 32, 32) * 2
    with torch.no_grad():
        fast, reference = model(x, record=True), ReferenceNet(model)(x)
    assert all(s.sum() > 0 for s in fast.layer_spikes[:2]) or steps == 1, "the test must exercise spikes and resets"
    assert torch.equal(fast.spikes, reference.spikes)
    assert torch.allclose(fast.membrane, reference.membrane, atol=1e-5)

    if steps == 25 and name != "model_b":
        return  # float64 BPTT over 25 steps of the conv-heavy nets is slow; model_b covers T = 25
    model.double()
    x = x[:1].double()
    fast, fast_grads = gradients(model, model, x)
    reference, reference_grads = gradients(model, ReferenceNet(model), x)
    assert torch.equal(fast.spikes, reference.spikes)
    assert any("beta" in key for key in fast_grads) and any("threshold" in key for key in fast_grads)
    assert_gradients_close(fast_grads, reference_grads)


def test_generic_surrogate_path_matches_reference():
    torch.manual_seed(3)
    model = create_model("model_b", num_steps=5, surrogate="atan", surrogate_slope=2.0)
    assert all(layer.engine == "snntorch" for layer in model.lif_layers())
    x = torch.randn(2, 1, 32, 32) * 2
    fast, fast_grads = gradients(model, model, x)
    reference, reference_grads = gradients(model, ReferenceNet(model), x)
    assert torch.equal(fast.spikes, reference.spikes)
    assert_gradients_close(fast_grads, reference_grads)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fused_neuron_is_snntorch_leaky(reset, per_channel):
    """The neuron alone, T = 25: float32 membranes bit-identical; float64 gradients of
    current, beta and threshold (per-channel ones too) within 1e-7 (of the largest) of snntorch's autograd."""
    torch.manual_seed(4)
    channels = 7
    shape = (channels, 1, 1) if per_channel else ()
    beta = torch.rand(shape) * 0.9 + 0.05 if per_channel else torch.tensor(0.85)
    threshold = torch.rand(shape) * 0.5 + 0.5 if per_channel else torch.tensor(0.7)
    current = torch.randn(25, 3, channels, 4, 4) * 1.5
    leaky = snntorch.Leaky(beta=beta.clone(), threshold=threshold.clone(), reset_mechanism=reset,
                           spike_grad=make_surrogate("fast_sigmoid", 25.0))
    mem = torch.zeros_like(current[0])
    spikes_fused, membranes_fused = FusedLeakySequence.apply(current, beta, threshold, 25.0, reset == "zero")
    for step in range(25):
        spike, mem = leaky(current[step], mem)
        assert torch.equal(spikes_fused[step], spike) and torch.equal(membranes_fused[step], mem), step

    def loss_and_grads(run):
        inputs = [t.double().requires_grad_() for t in (current, beta, threshold)]
        spikes, membranes = run(*inputs)
        weights = torch.linspace(-1, 1, membranes[0].numel(), dtype=torch.double).reshape(membranes[0].shape)
        loss = (spikes * weights).sum() + (membranes.square() * weights).sum()
        return torch.autograd.grad(loss, inputs)

    def snntorch_run(current64, beta64, threshold64):
        leaky64 = snntorch.Leaky(beta=beta64, threshold=threshold64, reset_mechanism=reset,
                                 spike_grad=make_surrogate("fast_sigmoid", 25.0))
        leaky64.beta, leaky64.threshold = beta64, threshold64  # keep them in the graph
        mem64, spikes, membranes = torch.zeros_like(current64[0]), [], []
        for step in range(25):
            spike, mem64 = leaky64(current64[step], mem64)
            spikes.append(spike.double())
            membranes.append(mem64)
        return torch.stack(spikes), torch.stack(membranes)

    fused_grads = loss_and_grads(lambda c, b, t: FusedLeakySequence.apply(c, b, t, 25.0, reset == "zero"))
    reference_grads = loss_and_grads(snntorch_run)
    for name, fused_grad, reference_grad in zip(("current", "beta", "threshold"), fused_grads, reference_grads):
        assert fused_grad.shape == reference_grad.shape, name
        error = (fused_grad - reference_grad).abs().max()
        assert error <= 1e-7 * reference_grad.abs().max(), (name, float(error), float(reference_grad.abs().max()))


def test_fused_and_snntorch_engines_agree_in_the_layer():
    torch.manual_seed(4)
    current = torch.randn(12, 4, 7) * 1.5
    fused = LIF(beta=0.9, threshold=0.7, num_channels=7, learn_beta=True)
    plain = LIF(beta=0.9, threshold=0.7, num_channels=7, learn_beta=True, engine="snntorch")
    assert fused.engine == "fused" and plain.engine == "snntorch"
    spikes_fused, membrane_fused = fused(current)
    spikes_plain, membrane_plain = plain(current)
    assert torch.equal(spikes_fused, spikes_plain) and torch.equal(membrane_fused, membrane_plain)
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


def test_sparse_inference_skips_silent_inputs_and_agrees_with_dense():
    torch.manual_seed(6)
    linear = torch.nn.Linear(50, 7)
    spikes = (torch.rand(9, 50) < 0.05).float()
    spikes[:, 10:] = 0  # most inputs silent
    assert torch.allclose(active_input_linear(spikes, linear), linear(spikes), atol=1e-6)
    model = create_model("model_a", num_steps=6)
    x = torch.randn(3, 1, 32, 32) * 2
    with torch.inference_mode():
        dense = model(x, record=True)
        with sparse_inference(max_active_fraction=1.0):
            sparse = model(x, record=True)
    assert [torch.equal(a, b) for a, b in zip(dense.layer_spikes, sparse.layer_spikes)] == [True] * 5
    assert torch.allclose(dense.membrane, sparse.membrane, atol=1e-5)
    with sparse_inference():  # never while gradients are recorded
        assert spike_fed_current(model.blocks[2], dense.layer_spikes[1]) is None


PAGE_FAULTS_OF_A_REUSED_BLOCK = """
import ctypes, resource, sys
from scnn.engine import keep_freed_memory
if sys.argv[1] == "keep" and not keep_freed_memory():
    sys.exit(3)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def faults_of_one_block(size=64 << 20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    libc.memset(block, 1, size)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_block()
print(faults_of_one_block())
"""


def test_keep_freed_memory_makes_malloc_reuse_large_blocks():
    """By default glibc maps a 64 MiB block fresh at every malloc and unmaps it at free (16,384
    page faults each time); configured, the second block reuses the first one's pages."""
    import subprocess
    import sys

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_A_REUSED_BLOCK, mode], capture_output=True, text=True)
        if run.returncode == 3:
            pytest.skip("not glibc: nothing to configure")
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    assert faults("default") > 10_000 and faults("keep") < 100


@pytest.mark.parametrize("name", ["model_a", "model_b"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_fixed_beta_gradients_match_reference_with_the_reused_membrane_buffer(name, reset):
    """With beta fixed, hidden layers compute their surrogate in their own membrane buffer."""
    torch.manual_seed(3)
    model = create_model(name, num_steps=5, reset_mechanism=reset, beta=0.8, threshold=0.4, learn_threshold=True)
    model.double()
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64) * 2
    fast, fast_grads = gradients(model, model, x)
    reference, reference_grads = gradients(model, ReferenceNet(model), x)
    assert torch.equal(fast.spikes, reference.spikes)
    assert model(x, record=True).layer_spikes[0].sum() > 0, "the hidden layers must spike and reset"
    assert_gradients_close(fast_grads, reference_grads)


def test_second_backward_through_a_reused_membrane_buffer_fails_loudly():
    torch.manual_seed(0)
    model = create_model("model_b", num_steps=5)
    loss = model(torch.randn(2, 1, 32, 32) * 2).logits.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("name", ["model_a", "model_b"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_inference_without_membrane_history_gives_the_same_outputs(name, reset):
    """Under inference_mode hidden layers keep one membrane state instead of [T, ...] membranes."""
    torch.manual_seed(5)
    model = create_model(name, num_steps=10, reset_mechanism=reset, beta=0.8, threshold=0.4)
    x = torch.randn(4, 1, 32, 32) * 2
    recorded = model(x, record=True)  # grad enabled, membranes of every layer kept
    with torch.inference_mode():
        light = model(x, record=False)
        reference = ReferenceNet(model)(x)
    assert recorded.layer_spikes[1].sum() > 0, "deeper layers must spike for the test to mean something"
    assert torch.equal(light.spikes, recorded.spikes) and torch.equal(light.logits, recorded.logits)
    assert torch.equal(light.spikes, reference.spikes)
