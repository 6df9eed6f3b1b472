"""The recurrent, synaptic and adaptive neurons: equal to snntorch where snntorch has them,
streaming equal to the multi-step pass, parameter ranges enforced, recurrent synapses counted,
and each one trains an epoch on FSDD through the public API."""

import pytest
import snntorch
import torch

from scnn.metrics import record_activity, synaptic_operations
from scnn.models import create_model
from scnn.neurons import ALIF, RLeaky, Synaptic, create_neuron, make_surrogate, reset_net

SIZE, BATCH = 6, 3


def _inputs(steps: int) -> torch.Tensor:
    torch.manual_seed(steps)
    return (torch.randn(steps, BATCH, SIZE) * 1.5 + 0.4).requires_grad_(True)


def _pair(kind: str, reset: str):
    """(our neuron, a snntorch module built independently with the same parameters, how to step it)."""
    common = dict(threshold=1.0, reset_mechanism=reset, learn_beta=True, learn_threshold=True)
    grad = make_surrogate("fast_sigmoid", 25.0)
    if kind == "rleaky_all_to_all":
        ours = RLeaky(beta=0.7, size=SIZE, **common)
        ref = snntorch.RLeaky(beta=torch.tensor(0.7), threshold=torch.tensor(1.0), linear_features=SIZE,
                              spike_grad=grad, reset_mechanism=reset, learn_beta=True, learn_threshold=True)
        ref.recurrent.load_state_dict(ours.rleaky.recurrent.state_dict())
        return ours, ref, "rleaky"
    if kind == "rleaky_one_to_one":
        ours = RLeaky(beta=0.7, all_to_all=False, V=0.6, num_channels=SIZE, **common)  # per-neuron beta
        ref = snntorch.RLeaky(beta=torch.full((SIZE,), 0.7), threshold=torch.ones(SIZE), all_to_all=False,
                              V=0.6, spike_grad=grad, reset_mechanism=reset, learn_beta=True, learn_threshold=True)
        return ours, ref, "rleaky"
    if kind == "synaptic":
        ours = Synaptic(alpha=0.8, beta=0.6, learn_alpha=True, num_channels=SIZE, **common)
        ref = snntorch.Synaptic(alpha=torch.full((SIZE,), 0.8), beta=torch.full((SIZE,), 0.6),
                                threshold=torch.ones(SIZE), spike_grad=grad, reset_mechanism=reset,
                                learn_alpha=True, learn_beta=True, learn_threshold=True)
        return ours, ref, "synaptic"
    # ALIF without adaptation is snntorch's Leaky (its docstring says so).
    ours = ALIF(beta=0.7, adaptation=0.0, **common)
    ref = snntorch.Leaky(beta=torch.tensor(0.7), threshold=torch.tensor(1.0), spike_grad=grad,
                         reset_mechanism=reset, learn_beta=True, learn_threshold=True)
    return ours, ref, "leaky"


def _run_reference(ref, how: str, current: torch.Tensor):
    zeros = torch.zeros_like(current[0])
    spike, synaptic, membrane = zeros, zeros, zeros
    spikes, membranes = [], []
    for current_t in current:
        if how == "rleaky":
            spike, membrane = ref(current_t, spike, membrane)
        elif how == "synaptic":
            spike, synaptic, membrane = ref(current_t, synaptic, membrane)
        else:
            spike, membrane = ref(current_t, membrane)
        spikes.append(spike)
        membranes.append(membrane)
    return torch.stack(spikes), torch.stack(membranes)


def _gradients(module, spikes, membranes, current, weights):
    loss = (membranes * weights).sum() + (spikes * weights.flip(0)).sum()
    parameters = [p for _, p in sorted(module.named_parameters(), key=lambda item: item[0].split(".")[-1])]
    return torch.autograd.grad(loss, [current, *parameters])


@pytest.mark.parametrize("steps", [1, 5, 25])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("kind", ["rleaky_all_to_all", "rleaky_one_to_one", "synaptic", "alif_as_leaky"])
def test_equal_to_snntorch_spikes_membranes_and_gradients(kind, reset, steps):
    ours, ref, how = _pair(kind, reset)
    current = _inputs(steps)
    weights = torch.randn(steps, BATCH, SIZE, generator=torch.Generator().manual_seed(1))
    spikes, membranes = ours(current)
    ref_spikes, ref_membranes = _run_reference(ref, how, current)
    assert torch.equal(spikes, ref_spikes)
    assert torch.allclose(membranes, ref_membranes, atol=1e-5)
    if steps == 25:
        assert 0 < int(spikes.sum()) < spikes.numel()  # the comparison saw spikes and silences
    ours_grads = _gradients(ours, spikes, membranes, current, weights)
    ref_grads = _gradients(ref, ref_spikes, ref_membranes, current, weights)
    assert len(ours_grads) == len(ref_grads) >= 3  # input, beta, threshold (and alpha / recurrent weights)
    for mine, theirs in zip(ours_grads, ref_grads):
        assert mine.shape == theirs.shape
        assert torch.allclose(mine, theirs, atol=1e-4), (mine, theirs)


@pytest.mark.parametrize("name, options, shape", [
    ("rleaky", {"size": 4}, (4,)),
    ("rleaky", {"size": 2, "channel_dims": 2}, (2, 5, 5)),  # recurrent convolution over conv maps
    ("rleaky", {"all_to_all": False, "V": -0.5}, (4,)),
    ("synaptic", {"alpha": 0.9, "reset_mechanism": "zero"}, (4,)),
    ("alif", {"rho": 0.8, "adaptation": 0.7}, (4,)),
    ("alif", {"rho": 0.95, "adaptation": 1.5, "reset_mechanism": "zero", "num_channels": 2, "channel_dims": 2},
     (2, 5, 5)),
])
def test_streaming_step_by_step_equals_the_whole_sequence(name, options, shape):
    torch.manual_seed(3)
    neuron = create_neuron(name, beta=0.8, **options)
    current = torch.randn(12, 2, *shape) * 2
    with torch.no_grad():
        spikes, membranes = neuron(current)
        reset_net(neuron)
        stepped = [neuron.step(c) for c in current]
        assert all(value is not None for value in neuron.state.values())
        neuron.reset()
        assert all(value is None for value in neuron.state.values())
    assert spikes.sum() > 0
    assert torch.equal(torch.stack([s for s, _ in stepped]), spikes)
    assert torch.allclose(torch.stack([m for _, m in stepped]), membranes, atol=1e-6)


def test_adaptation_raises_the_threshold_after_spikes():
    current = torch.full((40, 1, 1), 0.6)
    plain, _ = ALIF(beta=0.9, adaptation=0.0)(current)
    adaptive, _ = ALIF(beta=0.9, rho=0.95, adaptation=2.0)(current)
    plain_times = plain.flatten().nonzero().flatten()
    adaptive_times = adaptive.flatten().nonzero().flatten()
    assert adaptive_times[0] == plain_times[0]  # the first spike comes before any adaptation
    assert len(adaptive_times) < len(plain_times)  # then the threshold has risen
    assert (adaptive_times.diff() > plain_times.diff()[: len(adaptive_times) - 1]).any()


def test_learnt_parameters_stay_in_their_ranges_when_applied():
    neuron = ALIF(beta=0.5, rho=0.5, adaptation=0.5, learn_beta=True, learn_adaptation=True)
    with torch.no_grad():
        neuron.beta.fill_(1.7)
        neuron.rho.fill_(-0.4)
        neuron.adaptation.fill_(-3.0)
    clamped = ALIF(beta=1.0, rho=0.0, adaptation=0.0)
    current = torch.randn(10, 2, 3)
    assert torch.equal(neuron(current)[1], clamped(current)[1])
    assert {name for name, _ in neuron.named_parameters()} == {"beta", "rho", "adaptation"}
    per_neuron = ALIF(num_channels=5, learn_threshold=True, learn_adaptation=True)
    assert per_neuron.threshold.shape == per_neuron.rho.shape == per_neuron.adaptation.shape == (5,)


@pytest.mark.parametrize("name, options, message", [
    ("alif", {"beta": 1.5}, "beta must be <= 1.0"),
    ("alif", {"rho": -0.1}, "rho must be >= 0.0"),
    ("alif", {"adaptation": -1.0}, "adaptation must be >= 0.0"),
    ("synaptic", {"alpha": 2.0}, "alpha must be <= 1.0"),
    ("synaptic", {"threshold": 0.0}, "threshold must be > 0.0"),
    ("rleaky", {"size": None}, "RLeaky with all_to_all=True needs size"),
    ("rleaky", {"size": 3, "channel_dims": 2, "recurrent_kernel": 2}, "recurrent_kernel must be odd"),
    ("rleaky", {"size": 3, "reset_mechanism": "none"}, "reset_mechanism must be one of"),
])
def test_bad_parameters_are_refused_by_name(name, options, message):
    with pytest.raises(ValueError, match=message):
        create_neuron(name, **options)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("name, options, constants", [
    ("leaky", {}, {"beta": 0.7, "threshold": 0.8}),
    ("rleaky", {"size": SIZE}, {"beta": 0.7, "threshold": 0.8}),
    ("synaptic", {"alpha": 0.3}, {"alpha": 0.3, "beta": 0.7, "threshold": 0.8}),
    ("alif", {"rho": 0.6, "adaptation": 0.2}, {"beta": 0.7, "threshold": 0.8, "rho": 0.6, "adaptation": 0.2}),
])
def test_the_interface_gives_reset_mechanism_and_the_neurons_own_constants(name, options, constants, reset):
    """reset_mechanism and neuron_parameters(): what the quantiser, the frame runner and NIR read; the tensors are
    the neuron's own (one per channel when asked), so a change through them changes what the neuron computes."""
    neuron = create_neuron(name, beta=0.7, threshold=0.8, reset_mechanism=reset, num_channels=SIZE, **options)
    assert neuron.reset_mechanism == reset
    parameters = neuron.neuron_parameters()
    assert list(parameters) == list(constants)
    assert parameters["beta"].shape == (SIZE,)  # per channel (Leaky keeps one threshold)
    for key, value in constants.items():
        assert parameters[key].numel() in (1, SIZE) and torch.allclose(parameters[key], torch.tensor(value))
    if neuron.lif_parameters() is not None:  # Leaky: the same tensors as lif_parameters()
        assert parameters["beta"] is neuron.lif_parameters().beta
    current = torch.full((4, 1, SIZE), 0.5)
    before, _ = neuron(current)
    with torch.no_grad():
        parameters["threshold"].fill_(100.0)
    after, _ = neuron(current)
    assert before.sum() > 0 and after.sum() == 0


def test_a_neuron_without_a_lif_states_its_reset_and_has_no_constants_by_default():
    from scnn.neurons import SpikingNeuron

    class Plain(SpikingNeuron):
        pass

    assert Plain().neuron_parameters() == {}
    with pytest.raises(NotImplementedError, match="Plain states no reset_mechanism"):
        Plain().reset_mechanism


def test_a_spec_net_gives_recurrent_neurons_their_layer_size_and_options():
    model = create_model("4C3-16FC-10FC", neuron="rleaky", input_shape=(1, 8, 8), num_steps=3,
                         neuron_options={"recurrent_kernel": 5})
    recurrent = [neuron.recurrent_synapses()[0] for neuron in model.neurons()]
    assert isinstance(recurrent[0], torch.nn.Conv2d) and recurrent[0].weight.shape == (4, 4, 5, 5)
    assert [r.weight.shape for r in recurrent[1:]] == [(16, 16), (10, 10)]
    output = model(torch.randn(2, 1, 8, 8))
    assert output.membrane.shape == (3, 2, 10)


def test_recurrent_synapses_are_counted_in_synops():
    torch.manual_seed(0)
    model = create_model("16FC-3FC", neuron="rleaky", input_shape=(1, 4, 4), num_steps=6, beta=0.9)
    with torch.no_grad():
        model.blocks[0].activation.rleaky.recurrent.weight[:, :4] = 0  # neurons 0-3 feed back nothing
    x = torch.randn(5, 1, 4, 4) * 3
    activity = record_activity(model, x)
    ops = synaptic_operations(activity, len(x))
    spikes = activity[0].activation_output  # [T, B, 16]; step t feeds S[t-1] back
    fed_back = spikes[:-1]
    expected = (int(fed_back[..., 4:].sum()) * 16 + int(fed_back[..., :4].sum()) * 0) / len(x)
    assert fed_back.sum() > 0
    assert ops["per_layer"]["blocks.0.recurrent"] == {"kind": "acs", "effective": expected,
                                                      "dense": 16 * 16 * 5 * len(x) / len(x)}
    feedforward = sum(row["effective"] for name, row in ops["per_layer"].items() if row["kind"] == "acs")
    assert ops["effective_acs"] == pytest.approx(feedforward)
    assert ops["per_layer"]["blocks.1.recurrent"]["effective"] == int(activity[1].activation_output[:-1].sum()) * 3 / 5

    one_to_one = create_model("16FC-3FC", neuron="rleaky", input_shape=(1, 4, 4), num_steps=6, beta=0.9,
                              neuron_options={"all_to_all": False})
    activity = record_activity(one_to_one, x)
    ops = synaptic_operations(activity, len(x))
    assert ops["per_layer"]["blocks.0.recurrent"]["effective"] == int(activity[0].activation_output[:-1].sum()) / 5


@pytest.mark.parametrize("neuron", ["rleaky", "synaptic", "alif"])
def test_each_new_neuron_trains_one_epoch_on_fsdd(tmp_path, tiny_fsdd, neuron):
    from scnn.train import TrainConfig, evaluate_checkpoint, load_trained_model, train

    data_config, data = tiny_fsdd
    config = TrainConfig(model="4C3-32FC-10FC", model_overrides={"neuron": neuron, "num_steps": 3,
                                                                 "learn_beta": True, "per_channel_beta": True},
                         epochs=1, batch_size=10, threads=1)
    results = train(config, data_config, tmp_path / "run", progress=False, data=data)
    assert results["split_sizes"]["train"] == 30
    model, _ = load_trained_model(tmp_path / "run" / "best.pt")
    assert all(type(n).neuron_name == neuron for n in model.neurons())
    assert model.neurons()[1].beta.shape == (32,)
    assert not torch.allclose(model.neurons()[1].beta, torch.full((32,), 0.5))  # the per-neuron leak trained
    evaluation = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "eval", progress=False)
    assert evaluation["test_accuracy"] == results["test_accuracy"]
