"""The fast engine against the step-by-step snntorch reference: same spikes, membranes and gradients."""

import pytest
import snntorch
import torch

from scnn.engine import policy as engine
from scnn.engine import kernels as spike_kernels
from scnn.engine import fast_inference, keep_freed_memory
from scnn.models import create_model
from scnn.engine.lif import FusedLeakySequence, _lif_loop
from scnn.neurons import LIF, make_surrogate, reset_net
from scnn.models.reference import ReferenceNet


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


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("static", [False, True])
def test_compiled_lif_is_bit_identical_to_the_torch_loop(reset, per_channel, static):
    """spike_kernels.lif_spikes: the same spikes and membranes, bit for bit, as the fused
    sequence's torch loop (also when that loop keeps its membranes in its input buffer)."""
    torch.manual_seed(7)
    steps, shape = 7, (3, 4, 5, 6)  # [B, C, H, W]
    current = torch.randn(1 if static else steps, *shape) * 1.5
    current = current.expand(steps, *shape) if static else current
    beta = torch.rand(4, 1, 1) if per_channel else torch.tensor(0.8)
    threshold = torch.tensor(0.6)
    with torch.inference_mode():
        spikes, membranes = _lif_loop(current, beta, threshold, reset == "zero", True, False)
        fast_spikes, fast_membranes = spike_kernels.lif_spikes(current, beta, threshold, reset == "zero",
                                                               return_membranes=True)
        if not static:  # the torch loop writing its membranes into its input buffer
            in_place = current.clone()
            in_place_spikes, _ = _lif_loop(in_place, beta, threshold, reset == "zero", True, True)
            assert torch.equal(in_place_spikes, spikes) and torch.equal(in_place, membranes)
    assert 0.05 < spikes.mean() < 0.95
    assert torch.equal(fast_spikes, spikes) and torch.equal(fast_membranes, membranes)


@pytest.mark.parametrize("name", ["model_b", "4C3-P2-64FC-32FC-10FC"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_grouped_first_layer_matches_the_dense_product(name, reset, per_channel):
    """The first LIF and the next dense layer, grouped by spike train, against spikes @ W.T + b."""
    torch.manual_seed(8)
    model = create_model(name, num_steps=10, reset_mechanism=reset, per_channel_beta=per_channel, beta=0.7,
                         threshold=0.5).eval()
    if per_channel:
        with torch.no_grad():
            model.blocks[0].activation.leaky.beta.uniform_(0.2, 0.9)
    x = torch.randn(5, 1, 32, 32) * 2
    with torch.inference_mode():
        static = model.blocks[0].current(x)
        spikes_back, grouped = engine.lif_into_dense(model.blocks[0].activation,
                                                     static.unsqueeze(0).expand(10, *static.shape), model.blocks[1])
        with fast_inference(enabled=False):
            spikes, _ = model.blocks[0].activation(static.unsqueeze(0).expand(10, *static.shape))
            dense = model.blocks[1].synapse(spikes.flatten(0, 1)).reshape(10, 5, -1)
    assert grouped is not None and spikes_back is None, "the grouped path must apply here"
    assert 0.05 < spikes.mean() < 0.95
    assert torch.allclose(grouped, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["model_a", "model_b"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_inference_kernels_give_the_reference_spikes(name, reset, monkeypatch):
    """Model-level: default inference (kernels on) against snntorch's step-by-step loop and the torch path."""
    calls = []
    for kernel in ("static_lif_linear", "lif_csr_linear", "lif_spikes"):
        original = getattr(spike_kernels, kernel)
        monkeypatch.setattr(spike_kernels, kernel,
                            lambda *args, _kernel=kernel, _original=original, **kw: calls.append(_kernel)
                            or _original(*args, **kw))
    torch.manual_seed(10)
    model = create_model(name, num_steps=10, reset_mechanism=reset, beta=0.8, threshold=0.4).eval()
    x = torch.randn(4, 1, 32, 32) * 2
    with torch.inference_mode():
        fast, again = model(x), model(x)
        reference = ReferenceNet(model)(x)
        with fast_inference(enabled=False):
            plain = model(x)
    assert torch.equal(fast.spikes, reference.spikes) and torch.equal(fast.spikes, plain.spikes)
    assert torch.allclose(fast.membrane, reference.membrane, atol=1e-5)
    assert torch.equal(fast.logits, again.logits), "same input, same numbers"
    expected = {"model_b": {"static_lif_linear", "lif_spikes"},  # B's second dense layer is too small for CSR
                "model_a": {"lif_spikes", "lif_csr_linear"}}[name]
    assert set(calls) == expected


@pytest.mark.parametrize("neurons", [(16, 28, 28), (301,)])
@pytest.mark.parametrize("static", [False, True])
def test_lif_csr_product_matches_the_lif_and_the_dense_layer(neurons, static):
    """lif_csr_linear: the LIF's spikes passed as CSR; above max_density it hands back the spikes."""
    torch.manual_seed(15)
    steps, batch, size = 6, 3, int(torch.tensor(neurons).prod())
    linear = torch.nn.Linear(size, 40)
    current = torch.randn(1 if static else steps, batch, *neurons) * 0.6
    current = current.expand(steps, *current.shape[1:]) if static else current
    beta, threshold = torch.tensor(0.7), torch.tensor(0.8)
    with torch.inference_mode():
        spikes, _ = spike_kernels.lif_spikes(current, beta, threshold, False)
        expected = linear(spikes.reshape(steps * batch, -1)).reshape(steps, batch, -1)
        none, got = spike_kernels.lif_csr_linear(current, beta, threshold, False, linear.weight, linear.bias, 1.0)
        dense_spikes, nothing = spike_kernels.lif_csr_linear(current, beta, threshold, False, linear.weight,
                                                             linear.bias, 0.0)
    assert 0.0 < spikes.mean() < 0.5
    assert none is None and torch.allclose(got, expected, atol=1e-5)
    assert nothing is None and torch.equal(dense_spikes, spikes)
    with torch.inference_mode():
        linear.weight.mul_(2)  # the cached transposed weight must follow an in-place update
        _, doubled = spike_kernels.lif_csr_linear(current, beta, threshold, False, linear.weight, linear.bias, 1.0)
    assert torch.allclose(doubled, 2 * expected - linear.bias, atol=1e-5)


def test_inference_kernels_stay_off_under_gradients_hooks_and_on_request():
    model = create_model("model_a", num_steps=10).eval()
    lif, fc = model.blocks[1].activation, model.blocks[2]
    current = torch.randn(10, 2, 16, 28, 28) * 0.5
    with torch.no_grad():
        assert engine.lif_into_dense(model.blocks[0].activation, current, model.blocks[1]) == (None, None), \
            "a convolution follows: not a dense layer"
        spikes, fused = engine.lif_into_dense(lif, current, fc)
        assert spikes is None and fused.shape == (10, 2, 128)
        handle = fc.synapse.register_forward_hook(lambda *args: None)
        assert engine.lif_into_dense(lif, current, fc) == (None, None), "a hooked layer must run"
        handle.remove()
        with fast_inference(enabled=False):
            assert engine.lif_into_dense(lif, current, fc) == (None, None)
    assert engine.lif_into_dense(lif, current, fc) == (None, None), "gradients on: training takes the torch path"
    with pytest.raises(ValueError, match="max_density"):
        with fast_inference(max_density=2.0):
            pass


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
@pytest.mark.parametrize("learn_threshold", [True, False])
def test_fixed_beta_gradients_match_reference_with_the_reused_membrane_buffer(name, reset, learn_threshold):
    """With beta fixed, hidden layers compute their surrogate in their own membrane buffer, which
    is the synapse's output buffer; spikes are kept as bool (only when the backward reads them)."""
    torch.manual_seed(3)
    model = create_model(name, num_steps=5, reset_mechanism=reset, beta=0.8, threshold=0.4,
                         learn_threshold=learn_threshold)
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


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_spike_synapses_give_the_gradients_of_the_plain_layers_in_chunks(kind, monkeypatch):
    """scnn.engine.synapses keeps spikes as bool and converts them back a few rows at a time."""
    from scnn.engine import synapses

    monkeypatch.setattr(synapses, "CHUNK_BYTES", 4 * 3 * 200)  # a few rows per chunk, several chunks
    torch.manual_seed(11)
    layer = torch.nn.Linear(200, 7) if kind == "linear" else torch.nn.Conv2d(3, 5, 3, padding=1)
    shape = (13, 200) if kind == "linear" else (13, 3, 9, 9)
    spikes = (torch.rand(shape) < 0.3).double().requires_grad_()
    layer.double()
    grad_output = torch.randn_like(layer(spikes))
    expected = torch.autograd.grad(layer(spikes), [spikes, layer.weight, layer.bias], grad_output)
    assert len(synapses._row_chunks(13, spikes[0].numel())) > 2
    output = synapses.spike_synapse(layer, spikes)
    assert torch.equal(output, layer(spikes))
    for got, want in zip(torch.autograd.grad(output, [spikes, layer.weight, layer.bias], grad_output), expected):
        assert torch.allclose(got, want, atol=1e-12)


def _saved_bytes(network, x) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one forward."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        network(x).logits.sum()
    return sum(storages.values())


@pytest.mark.parametrize("name", ["model_a", "model_b"])
def test_training_keeps_fewer_bytes_for_backward_than_the_reference(name, monkeypatch):
    """The peak-memory target in miniature: what the engine saves for backward against the
    per-step loop, with spike inputs kept as bool (as they are above one chunk, at batch 128)."""
    from scnn.engine import synapses

    monkeypatch.setattr(synapses, "CHUNK_BYTES", 1 << 16)
    torch.manual_seed(12)
    model = create_model(name, num_steps=10)
    x = torch.randn(8, 1, 32, 32) * 2
    engine_bytes, reference_bytes = _saved_bytes(model, x), _saved_bytes(ReferenceNet(model), x)
    assert engine_bytes < 0.75 * reference_bytes, (engine_bytes, reference_bytes)


@pytest.mark.parametrize("name", ["model_b", "4C3-P2-64FC-10FC"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_grouped_first_layer_trains_like_the_plain_engine(name, reset, per_channel, monkeypatch):
    """Training through StaticLifLinearFunction: the same outputs and gradients as the plain path."""
    from scnn.engine import synapses

    calls = []
    original = synapses.StaticLifLinearFunction.apply
    monkeypatch.setattr(synapses.StaticLifLinearFunction, "apply",
                        lambda *args: calls.append(1) or original(*args))
    torch.manual_seed(16)
    model = create_model(name, num_steps=8, reset_mechanism=reset, per_channel_beta=per_channel, beta=0.7,
                         threshold=0.5)
    if per_channel:
        with torch.no_grad():
            model.blocks[0].activation.leaky.beta.uniform_(0.2, 0.9)
    x = torch.randn(3, 1, 32, 32) * 2
    grouped, grouped_grads = gradients(model, model, x)
    assert calls, "the grouped training path must run here"
    monkeypatch.setitem(engine._SETTINGS, "grouped_training", False)
    plain, plain_grads = gradients(model, model, x)
    assert len(calls) == 1
    assert torch.equal(grouped.spikes, plain.spikes)
    assert torch.allclose(grouped.membrane, plain.membrane, atol=1e-5)
    assert_gradients_close(grouped_grads, plain_grads)


@pytest.mark.parametrize("in_channels, padding, bias", [(1, 2, True), (2, 0, False), (3, 1, True)])
def test_a_column_convolution_as_one_product_equals_the_convolution(in_channels, padding, bias):
    from torch import nn

    from scnn.engine.column_conv import column_conv, column_conv_applies

    torch.manual_seed(in_channels)
    conv = nn.Conv2d(in_channels, 16, (5, 1), padding=(padding, 0), bias=bias)
    x = torch.randn(40, in_channels, 20, 1)
    with torch.no_grad():
        assert column_conv_applies(conv, x)
        expected = conv(x)
        assert torch.allclose(column_conv(conv, x), expected, atol=1e-5, rtol=0)
        conv.weight.mul_(-2.0)  # the cached matrix follows the weight
        assert torch.allclose(column_conv(conv, x), conv(x), atol=1e-5, rtol=0)
    assert not column_conv_applies(conv, x)  # gradients wanted: the convolution itself
    with torch.no_grad():
        assert not column_conv_applies(nn.Conv2d(1, 4, (3, 3)), x[:, :1])
        assert not column_conv_applies(nn.Conv2d(1, 4, (3, 1), stride=(2, 1)), x[:, :1])


def test_the_streaming_models_inference_equals_its_path_without_the_compiled_parts():
    from scnn.engine import fast_inference
    from scnn.models import create_model

    torch.manual_seed(0)
    model = create_model("streaming", input_shape=(1, 20, 25)).eval()
    x = torch.randn(8, 1, 20, 25) * 2
    with torch.no_grad():
        for module in model.modules():  # untrained dense layers, strong enough that every layer spikes
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(3.0)
        fast = model(x, record=True)
        with fast_inference(False):
            plain = model(x, record=True)
    spiking = [s.mean().item() for s in fast.layer_spikes]
    assert all(0.01 < rate < 0.9 for rate in spiking[:-1]), spiking
    assert torch.allclose(fast.membrane, plain.membrane, atol=1e-4, rtol=0)
    for ours, theirs in zip(fast.layer_spikes, plain.layer_spikes):
        assert (ours != theirs).float().mean() < 1e-3  # float32 summation order may move a spike at the threshold
