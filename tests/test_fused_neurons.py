"""The fused sequences of scnn.engine.recurrent against the neurons' step loops and snntorch.

For RLeaky (one-to-one and all-to-all, dense and convolution), Synaptic and ALIF, with both
resets, T in {1, 5, 25}, per-channel parameters of distinct values and every parameter
learnable: spikes identical, membranes within 1e-5, gradients of the input, the parameters
and the recurrent weights within 1e-4 of the step loop; RLeaky and Synaptic also of
snntorch's own module built independently (ALIF has no snntorch twin).
"""

import copy

import pytest
import snntorch
import torch
from torch import nn

from scnn.engine.recurrent import FusedALIFSequence, FusedRLeakySequence, FusedSynapticSequence
from scnn.neurons import ALIF, RLeaky, SpikingNeuron, Synaptic

BATCH = 3
DENSE, CHANNELS, SIDE = 7, 3, 4


def _spread(tensor: torch.Tensor, low: float, high: float, seed: int) -> torch.Tensor:
    """Distinct values per channel in [low, high] (a per-channel test of equal values proves little)."""
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(tensor.shape, generator=generator)


def _build(kind: str, reset: str, engine: str, seed: int = 0):
    """A neuron of ``kind`` with per-channel, learnable, distinct parameters; the same values for any engine."""
    torch.manual_seed(seed)
    conv = kind == "rleaky_conv"
    channels, dims = (CHANNELS, 2) if conv else (DENSE, 0)
    common = dict(reset_mechanism=reset, learn_beta=True, learn_threshold=True, num_channels=channels,
                  channel_dims=dims, engine=engine)
    if kind.startswith("rleaky"):
        neuron = RLeaky(beta=0.7, size=channels, all_to_all=kind != "rleaky_one_to_one", V=0.5,
                        learn_recurrent=True, **common)
        if kind == "rleaky_one_to_one":  # one V per neuron, some inhibitory
            neuron.rleaky.V.data = _spread(torch.zeros(DENSE), -0.8, 0.8, seed + 5)
            neuron.rleaky.recurrent.V = neuron.rleaky.V
        else:
            with torch.no_grad():
                neuron.rleaky.recurrent.weight.mul_(2.0)  # strong enough to change the spikes
    elif kind == "synaptic":
        neuron = Synaptic(alpha=0.8, beta=0.6, learn_alpha=True, **common)
        neuron.synaptic.alpha.data = _spread(neuron.synaptic.alpha, 0.3, 0.95, seed + 1)
    else:
        neuron = ALIF(beta=0.7, rho=0.9, adaptation=0.5, learn_adaptation=True, **common)
        neuron.rho.data = _spread(neuron.rho, 0.5, 0.98, seed + 2)
        neuron.adaptation.data = _spread(neuron.adaptation, 0.0, 1.5, seed + 3)
    neuron.beta.data = _spread(neuron.beta, 0.4, 0.95, seed + 4)
    neuron.threshold.data = _spread(neuron.threshold, 0.6, 1.4, seed + 6)
    return neuron


def _current(kind: str, steps: int) -> torch.Tensor:
    shape = (CHANNELS, SIDE, SIDE) if kind == "rleaky_conv" else (DENSE,)
    generator = torch.Generator().manual_seed(100 + steps)
    return (torch.randn(steps, BATCH, *shape, generator=generator) * 1.2 + 0.4).requires_grad_(True)


def _snntorch_twin(neuron):
    """snntorch's own module with this neuron's values, every parameter a leaf that collects gradient."""
    twin = neuron.snntorch_equivalent()
    for name in ("alpha", "beta", "threshold"):
        if hasattr(twin, name):
            setattr(twin, name, nn.Parameter(getattr(twin, name).detach().clone()))
    if isinstance(twin, snntorch.RLeaky) and not twin.all_to_all:
        twin.V = twin.recurrent.V = nn.Parameter(twin.recurrent.V.detach().clone())
    return twin


def _step_twin(twin, current):
    zeros = torch.zeros_like(current[0])
    spike, synaptic, membrane = zeros, zeros, zeros
    spikes, membranes = [], []
    for current_t in current:
        if isinstance(twin, snntorch.RLeaky):
            spike, membrane = twin(current_t, spike, membrane)
        else:
            spike, synaptic, membrane = twin(current_t, synaptic, membrane)
        spikes.append(spike)
        membranes.append(membrane)
    return torch.stack(spikes), torch.stack(membranes)


def _named_gradients(module, spikes, membranes, current):
    """Gradients of a loss reading both spikes and membranes, by the parameter's last name."""
    generator = torch.Generator().manual_seed(7)
    weights = torch.randn(membranes.shape, generator=generator)
    loss = (membranes * weights).sum() + (spikes * weights.flip(0)).sum()
    named = {name.split(".")[-1]: p for name, p in module.named_parameters()}
    grads = torch.autograd.grad(loss, [current, *named.values()])
    return dict(zip(["input", *named], grads))


def _assert_same(ours, reference):
    (spikes, membranes, grads), (ref_spikes, ref_membranes, ref_grads) = ours, reference
    assert torch.equal(spikes, ref_spikes)
    assert torch.allclose(membranes, ref_membranes, atol=1e-5, rtol=0)
    assert sorted(grads) == sorted(ref_grads)
    for name, grad in grads.items():
        assert grad.shape == ref_grads[name].shape, name
        assert torch.allclose(grad, ref_grads[name], atol=1e-4, rtol=0), (name, (grad - ref_grads[name]).abs().max())


def _run(neuron, current):
    """(spikes, membranes, gradients) of a neuron's forward, or of stepping snntorch's module."""
    spikes, membranes = neuron(current) if isinstance(neuron, SpikingNeuron) else _step_twin(neuron, current)
    return spikes, membranes, _named_gradients(neuron, spikes, membranes, current)


KINDS = ["rleaky_all_to_all", "rleaky_conv", "rleaky_one_to_one", "synaptic", "alif"]
FUSED = {"rleaky": FusedRLeakySequence, "synaptic": FusedSynapticSequence, "alif": FusedALIFSequence}


@pytest.mark.parametrize("steps", [1, 5, 25])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_equals_the_step_loop_and_snntorch(kind, reset, steps):
    fused, loop = _build(kind, reset, "fused"), _build(kind, reset, "loop")
    loop.load_state_dict(fused.state_dict())
    current = _current(kind, steps)
    ours = _run(fused, current)
    family = kind.split("_")[0]
    assert type(ours[0].grad_fn).__name__ == FUSED[family].__name__ + "Backward"  # the fused path ran
    expected = {"input", "beta", "threshold", *{"rleaky_one_to_one": ["V"], "synaptic": ["alpha"],
                                                 "alif": ["rho", "adaptation"]}.get(kind, ["weight", "bias"])}
    assert set(ours[2]) == expected
    _assert_same(ours, _run(loop, current))
    if steps == 25:
        spikes = ours[0]
        assert 0.05 < float(spikes.detach().mean()) < 0.95  # the comparison saw spikes and silences
        if kind != "rleaky_conv":
            assert bool((ours[2]["beta"] != 0).all())  # every channel's gradient was compared
    if family != "alif":
        twin = _snntorch_twin(fused)
        _assert_same(ours, _run(twin, current))


def test_the_recurrence_changes_the_spikes_it_is_compared_on():
    """The all-to-all weights matter in these tests: without them other neurons spike."""
    neuron = _build("rleaky_all_to_all", "subtract", "fused")
    current = _current("rleaky_all_to_all", 25)
    spikes, _ = neuron(current)
    with torch.no_grad():
        neuron.rleaky.recurrent.weight.zero_()
    assert not torch.equal(neuron(current)[0], spikes)


@pytest.mark.parametrize("kind", ["rleaky_all_to_all", "synaptic", "alif"])
def test_membranes_only_when_asked_and_inference_without_graph(kind):
    neuron, current = _build(kind, "subtract", "fused"), _current(kind, 5).detach()
    spikes, membranes = neuron(current, return_membrane=False)
    assert membranes is None
    with torch.no_grad():
        quiet_spikes, quiet_membranes = neuron(current)
    assert quiet_spikes.grad_fn is None and torch.equal(quiet_spikes, spikes)
    reference = copy.deepcopy(neuron)
    reference.engine = "loop"
    with torch.no_grad():
        assert torch.allclose(reference(current)[1], quiet_membranes, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["rleaky_one_to_one", "synaptic", "alif"])
def test_other_surrogates_take_the_step_loop(kind):
    options = {"surrogate": "atan"}
    if kind == "rleaky_one_to_one":
        neuron = RLeaky(all_to_all=False, **options)
    elif kind == "synaptic":
        neuron = Synaptic(**options)
    else:
        neuron = ALIF(**options)
    assert neuron.engine == "loop"  # the fused sequences implement the fast sigmoid only
    spikes, _ = neuron(torch.randn(4, 2, 5, requires_grad=True) * 2)
    assert spikes.grad_fn is not None and "Fused" not in type(spikes.grad_fn).__name__
    assert _build(kind, "subtract", "fused").engine == "fused"


@pytest.mark.parametrize("cls", [RLeaky, Synaptic, ALIF])
def test_an_unknown_engine_is_refused_by_name(cls):
    options = {"size": 4} if cls is RLeaky else {}
    with pytest.raises(ValueError, match="engine must be one of"):
        cls(engine="numba", **options)


def test_a_surrogate_outside_the_fused_path_keeps_the_same_forward():
    """Forward values do not depend on the surrogate: the loop with atan gives the fused spikes."""
    current = _current("alif", 25).detach()
    fused = _build("alif", "zero", "fused")
    atan = ALIF(beta=0.7, rho=0.9, adaptation=0.5, reset_mechanism="zero", num_channels=DENSE, surrogate="atan")
    atan.load_state_dict(fused.state_dict())
    with torch.no_grad():
        assert torch.equal(atan(current)[0], fused(current)[0])


def test_the_all_to_all_recurrence_refuses_a_current_of_the_wrong_rank():
    neuron = _build("rleaky_all_to_all", "subtract", "fused")
    with pytest.raises(ValueError, match=r"current \[T, B, N\]"):
        neuron(torch.zeros(2, 3, DENSE, 1))


@pytest.mark.parametrize("learn", ["input_only", "parameters_only"])
@pytest.mark.parametrize("kind", ["rleaky_all_to_all", "rleaky_one_to_one", "synaptic", "alif"])
def test_gradients_when_only_some_inputs_need_them(kind, learn):
    """A fixed neuron (only the input learns) and a first layer (the input is data): the same gradients."""
    fused, loop = _build(kind, "zero", "fused"), _build(kind, "zero", "loop")
    loop.load_state_dict(fused.state_dict())
    current = _current(kind, 25)
    if learn == "input_only":
        for neuron in (fused, loop):
            neuron.requires_grad_(False)
    else:
        current = current.detach()
    results = []
    for neuron in (fused, loop):
        spikes, membranes = neuron(current)
        leaves = [current] if learn == "input_only" else list(neuron.parameters())
        loss = (membranes * torch.linspace(-1, 1, membranes.numel()).reshape(membranes.shape)).sum() + spikes.sum()
        results.append((spikes, torch.autograd.grad(loss, leaves)))
    (spikes, grads), (ref_spikes, ref_grads) = results
    assert torch.equal(spikes, ref_spikes) and len(grads) == len(ref_grads) >= 1
    for grad, ref in zip(grads, ref_grads):
        # within 1e-4, or a float32 rounding of large parameter gradients (sums over 25 steps and the batch):
        # the recurrent weights' reach several hundred, where the two orders of summation differ by 2e-4 on
        # some CPUs (measured 507.0889 against 507.0887)
        assert torch.allclose(grad, ref, atol=1e-4, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["rleaky_all_to_all", "rleaky_one_to_one", "synaptic", "alif"])
def test_fused_equals_the_step_loop_on_cuda(kind):
    fused, loop = _build(kind, "subtract", "fused").cuda(), _build(kind, "subtract", "loop").cuda()
    loop.load_state_dict(fused.state_dict())
    current = _current(kind, 25).detach().cuda().requires_grad_(True)
    ours = _run(fused, current)
    assert "Fused" in type(ours[0].grad_fn).__name__
    _assert_same(ours, _run(loop, current))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("steps", [2, 25])
@pytest.mark.parametrize("shape", [(DENSE,), (CHANNELS, SIDE, SIDE)])
def test_the_compiled_alif_inference_equals_the_fused_sequence(reset, steps, shape):
    """scnn.engine.kernels.alif_spikes (inference on the CPU) does the fused forward's float32 operations in
    its order: the same spikes and the same membranes, bit for bit, with per-neuron parameters."""
    from scnn.engine import fast_inference, kernels

    if not kernels.available():
        pytest.skip("numba is not installed")
    torch.manual_seed(steps)
    channels = shape[0]
    neuron = ALIF(beta=0.7, rho=0.9, adaptation=0.5, learn_adaptation=True, reset_mechanism=reset,
                  num_channels=channels, channel_dims=len(shape) - 1)
    for name, low, high, seed in (("rho", 0.5, 0.98, 2), ("adaptation", 0.0, 1.5, 3), ("beta", 0.4, 0.95, 4),
                                  ("threshold", 0.6, 1.4, 6)):
        getattr(neuron, name).data = _spread(getattr(neuron, name), low, high, seed)
    current = torch.randn(steps, BATCH, *shape) * 1.2 + 0.4
    fused_spikes, fused_membranes = FusedALIFSequence.apply(current, neuron.beta, neuron.threshold, neuron.rho,
                                                            neuron.adaptation, neuron.slope, neuron.reset_to_zero)
    spikes, membranes = kernels.alif_spikes(current, neuron.beta, neuron.threshold, neuron.rho, neuron.adaptation,
                                            neuron.reset_to_zero, return_membranes=True)
    assert torch.equal(spikes, fused_spikes) and torch.equal(membranes, fused_membranes.detach())
    assert 0.05 < spikes.mean() < 0.95
    with torch.no_grad():  # the neuron takes the kernel in inference, and the fused sequence without it
        assert torch.equal(neuron(current)[1], membranes)
        with fast_inference(False):
            assert torch.equal(neuron(current)[1], membranes)
