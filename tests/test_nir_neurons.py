"""NIR export and import of every neuron (Leaky, RLeaky, Synaptic, ALIF) and of the streaming presets.

The meaning of a NIR graph is checked by a small reference interpreter (:func:`run_nir`, forward Euler
with one step = dt, an edge that closes a cycle carrying the previous step's output). The interpreter is
itself checked against ``snntorch.import_from_nir`` on the graphs snntorch reads (LIF, CubaLIF, its RLeaky
form), then: scnn -> NIR -> interpreter gives scnn's spikes, membranes and predictions on FSDD test
recordings; scnn -> NIR file -> scnn gives the same network; what NIR cannot express is refused naming
the layer (the zero reset of RLeaky/Synaptic is shown to differ from what snntorch's importer builds)."""

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

nir = pytest.importorskip("nir", reason="the NIR tests need the package 'nir' (requirements.txt)")
pytest.importorskip("nirtorch", reason="snntorch's NIR importer needs 'nirtorch' (requirements.txt)")

from scnn.interop.nir import DT, export_nir, import_nir  # noqa: E402
from scnn.models import create_model  # noqa: E402

warnings.filterwarnings("ignore", module="snntorch")
SAMPLES = 6


# --------------------------------------------------------------------------- the reference interpreter


def _stateful(node) -> bool:
    return type(node).__name__ in ("LI", "LIF", "CubaLIF")


def _schedule(graph):
    """(evaluation order, delayed edges): inside a cycle, the edges into the nodes that feed the cycle's
    stateful node back (reset, recurrent weights) carry the previous step's output."""
    successors = {name: [] for name in graph.nodes}
    for source, target in graph.edges:
        successors[source].append(target)

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for target in successors[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    reachable = {name: reach(name) for name in graph.nodes}
    delayed = set()
    for source, target in graph.edges:
        in_cycle = source in reachable[target]  # target reaches source: the edge lies on a cycle
        feeds_state_back = any(_stateful(graph.nodes[t]) and t in reachable[target] and target in reachable[t]
                               for t in successors[target])
        if in_cycle and feeds_state_back and not _stateful(graph.nodes[target]):
            delayed.add((source, target))
    pending = {name: {s for s, t in graph.edges if t == name and (s, t) not in delayed} for name in graph.nodes}
    order = []
    while pending:
        ready = [name for name in graph.nodes if name in pending and not pending[name]]
        assert ready, "the graph has a cycle without a stateful node"
        for name in ready:
            order.append(name)
            del pending[name]
            for waiting in pending.values():
                waiting.discard(name)
    return order, delayed


def _param(values):
    """float64 NIR parameter -> float32 tensor (1 - dt/tau recovers the float32 beta exactly)."""
    return torch.from_numpy(np.asarray(values, np.float64).astype(np.float32))


def _shape(node) -> list[int]:
    return [int(v) for v in np.asarray(next(iter(node.output_type.values()))).reshape(-1)]


def run_nir(graph, inputs: torch.Tensor, dt: float = DT) -> dict:
    """Run a NIR graph on ``inputs`` ``[T, B, ...]`` (one input per step); returns each node's outputs
    ``[T, B, ...]`` by name, plus ``"<name>.v"``, the membrane after the step's update (before any reset)."""
    order, delayed = _schedule(graph)
    incoming = {name: [(s, (s, name) in delayed) for s, t in graph.edges if t == name] for name in graph.nodes}
    previous, state, record = {}, {}, {}
    for x in inputs:
        batch = x.shape[0]
        out = {}
        for name in order:
            node, kind = graph.nodes[name], type(graph.nodes[name]).__name__
            parts = [(previous[s] if s in previous else torch.zeros(batch, *_shape(graph.nodes[s])))
                     if late else out[s] for s, late in incoming[name]]  # before step 0 every output is 0
            if kind == "Input":
                y = x
            elif kind == "Output":
                y = parts[0]
            elif kind == "Flatten":
                y = parts[0].reshape(batch, -1)
            elif kind in ("Affine", "Linear"):
                y = F.linear(parts[0], _param(node.weight), _param(node.bias) if kind == "Affine" else None)
            elif kind == "Conv2d":
                y = F.conv2d(parts[0], _param(node.weight), _param(node.bias), padding=tuple(np.asarray(
                    node.padding).reshape(-1).tolist()))
            elif kind == "Scale":
                y = parts[0] * _param(node.scale)
            elif kind == "Threshold":
                y = (parts[0] > _param(node.threshold)).float()
            elif kind in ("LI", "LIF", "CubaLIF"):
                total = parts[0]
                tau = node.tau_mem if kind == "CubaLIF" else node.tau
                scale = np.asarray(node.r, np.float64) * dt / np.asarray(tau, np.float64)
                assert np.allclose(scale, 1.0) and np.allclose(node.v_leak, 0), "the interpreter takes r = tau/dt"
                v, syn = state.get(name, (torch.zeros_like(total), torch.zeros_like(total)))
                if kind == "CubaLIF":
                    assert np.allclose(np.asarray(node.w_in) * dt / np.asarray(node.tau_syn), 1.0)
                    syn = _param(1 - dt / np.asarray(node.tau_syn, np.float64)) * syn + total
                    total = syn
                    for more in parts[1:]:
                        total = total + more  # (not used by these tests: recurrence into a CubaLIF)
                    v = _param(1 - dt / np.asarray(tau, np.float64)) * v + total
                else:
                    v = _param(1 - dt / np.asarray(tau, np.float64)) * v + total
                    for more in parts[1:]:  # in edge order: synapse, recurrent, reset (scnn's order of sums)
                        v = v + more
                record.setdefault(name + ".v", []).append(v)
                if kind == "LI":
                    y = v
                else:
                    y = (v > _param(node.v_threshold)).float()
                    v = v * (1 - y)  # v_reset = 0, at once
                state[name] = (v, syn)
            else:
                raise AssertionError(f"the interpreter has no {kind}")
            out[name] = y
            record.setdefault(name, []).append(y)
        previous = out
    return {name: torch.stack(values) for name, values in record.items()}


def snntorch_steps(graph, x: torch.Tensor) -> list[torch.Tensor]:
    """snntorch.import_from_nir's network stepped over ``x`` ``[T, B, ...]``, one sample at a time (its
    Flatten counts the batch); per-neuron-module spikes ``[T, B, neurons]`` in module order."""
    import snntorch
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "replace rnn subgraph with nirgraph"
        net = import_from_nir(graph)
    neurons = [m for m in net.modules() if isinstance(m, snntorch.SpikingNeuron)]
    per_sample = []
    for sample in range(x.shape[1]):
        snntorch.utils.reset(net)
        recorded = [[] for _ in neurons]
        hooks = [m.register_forward_hook(lambda mod, args, out, i=i: recorded[i].append(
            (out[0] if isinstance(out, tuple) else out).detach())) for i, m in enumerate(neurons)]
        state = None  # nirtorch's graph returns (output, state): recurrent edges live in that state
        with torch.no_grad():
            for step in x[:, sample:sample + 1]:
                _, state = net(step, state)
        for hook in hooks:
            hook.remove()
        per_sample.append([torch.stack(r).reshape(len(r), -1) for r in recorded])  # [T, neurons] per module
    return [torch.stack([s[i] for s in per_sample], 1) for i in range(len(neurons))]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def recordings(tiny_fsdd):
    """A few FSDD test recordings' features [B, 1, 32, 32]."""
    torch.set_num_threads(1)
    return tiny_fsdd[1].test[0][:SAMPLES]


def seeded(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(name, **overrides).eval()


def scnn_run(model, x):
    with torch.no_grad():
        return model(x, record=True)


def spike_nodes(graph) -> list[str]:
    return [n for n, node in graph.nodes.items() if type(node).__name__ in ("Threshold", "LIF")]


def assert_graph_runs_as_scnn(model, graph, x, steps, frames=False):
    """The interpreter's spikes per layer equal scnn's, its readout equals scnn's logits and predictions."""
    inputs = x.permute(3, 0, 1, 2).unsqueeze(-1) if frames else x.unsqueeze(0).expand(steps, *x.shape)
    ran = run_nir(graph, inputs)
    output = scnn_run(model, x)
    names = spike_nodes(graph)
    assert len(names) == len(output.layer_spikes)
    for index, (name, mine) in enumerate(zip(names, output.layer_spikes)):
        torch.testing.assert_close(ran[name], mine.float(), rtol=0, atol=0, msg=f"layer {index} ({name})")
        assert 0 < int(mine.sum()) < mine.numel(), f"layer {index} spikes, but not always"
    logits = ran["output"].sum(0)
    torch.testing.assert_close(logits, output.logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(1).numpy(), output.logits.argmax(1).numpy())
    return output


def assert_round_trip(model, graph, x, tmp_path, kind):
    """scnn -> NIR file -> scnn: the same spikes and logits, bit for bit, with the neuron kind kept."""
    path = tmp_path / "model.nir"
    nir.write(path, graph)
    imported = import_nir(nir.read(path))
    assert type(imported.blocks[1].activation).__name__ == type(model.blocks[1].activation).__name__ == kind
    a, b = scnn_run(model, x), scnn_run(imported, x)
    torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=0)
    for mine, theirs in zip(a.layer_spikes, b.layer_spikes):
        torch.testing.assert_close(theirs, mine, rtol=0, atol=0)
    return imported


# --------------------------------------------------------------------------- the interpreter is snntorch's reading


def test_the_reference_interpreter_reads_graphs_as_snntorch_does(recordings):
    """The interpreter's conventions are snntorch's: LIF and CubaLIF nodes give the spikes of
    snntorch.import_from_nir's network, and snntorch's RLeaky form (LIF + recurrent Affine) the spikes of the
    snntorch.RLeaky its importer means to build (reset_delay=False, zero reset: W_rec S[t-1] + b, the bias
    from the first step). (snntorch 1.0.0's import_from_nir itself, on nirtorch 2.6, runs that subgraph as
    LIF(W_rec(input + S[t-1])): its _create_rnn_subgraph wires the input through W_rec.)"""
    import snntorch

    rng = np.random.default_rng(1)
    n_in, n = 32 * 32, 24

    def affine(rows, cols, scale):
        return nir.Affine(weight=rng.normal(0, scale, (rows, cols)).astype(np.float32),
                          bias=rng.normal(0, 0.05, rows).astype(np.float32))

    def ones(value):
        return np.full(n, value, np.float32)

    lif = nir.LIF(tau=ones(DT / 0.2), r=ones(1 / 0.2), v_leak=ones(0), v_threshold=ones(0.6), v_reset=ones(0))
    head = {"input": nir.Input(input_type={"input": np.array([1, 32, 32])}),
            "flat": nir.Flatten(input_type={"input": np.array([1, 32, 32])}, start_dim=0),
            "fc": affine(n, n_in, 0.08), "lif": lif, "output": nir.Output(output_type={"output": np.array([n])})}
    feed_forward = nir.NIRGraph(nodes={
        **head, "fc2": affine(n, n, 0.5),
        "cuba": nir.CubaLIF(tau_syn=ones(DT / 0.3), tau_mem=ones(DT / 0.2), r=ones(1 / 0.2), v_leak=ones(0),
                            v_threshold=ones(0.7), w_in=ones(1 / 0.3), v_reset=ones(0))},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "cuba"), ("cuba", "output")])
    x = recordings.unsqueeze(0).expand(8, *recordings.shape)
    ran = run_nir(feed_forward, x)
    theirs = snntorch_steps(feed_forward, x)
    assert len(theirs) == 2
    for mine, other in zip((ran["lif"], ran["cuba"]), theirs):
        torch.testing.assert_close(other.reshape(mine.shape), mine, rtol=0, atol=0)
        assert 0 < int(mine.sum()) < mine.numel()

    recurrent = nir.NIRGraph(nodes={**head, "rec": affine(n, n, 0.4)},
                             edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
                                    ("lif", "output")])
    ran = run_nir(recurrent, x)["lif"]
    rleaky = snntorch.RLeaky(beta=0.8, threshold=0.6, linear_features=n, reset_mechanism="zero", reset_delay=False)
    with torch.no_grad():
        rleaky.recurrent.weight.copy_(torch.from_numpy(recurrent.nodes["rec"].weight))
        rleaky.recurrent.bias.copy_(torch.from_numpy(recurrent.nodes["rec"].bias))
        current = F.linear(x.reshape(8, SAMPLES, -1), torch.from_numpy(head["fc"].weight),
                           torch.from_numpy(head["fc"].bias))
        spike = membrane = torch.zeros(SAMPLES, n)
        spikes = []
        for current_t in current:
            spike, membrane = rleaky(current_t, spike, membrane)
            spikes.append(spike)
    torch.testing.assert_close(torch.stack(spikes), ran, rtol=0, atol=0)
    assert 0 < int(ran.sum()) < ran.numel()


# --------------------------------------------------------------------------- every neuron, spec nets

NEURONS = [
    # (neuron, overrides, round-trip kind)
    ("leaky", {}, "LIF"),
    ("rleaky", {}, "RLeaky"),  # all-to-all: recurrent Conv2d on the conv maps, Affine on the dense layers
    ("rleaky", {"neuron_options": {"all_to_all": False, "V": 0.3}}, "RLeaky"),
    ("synaptic", {"neuron_options": {"alpha": 0.6}}, "Synaptic"),
]


@pytest.mark.parametrize("neuron,overrides,kind", NEURONS, ids=["leaky", "rleaky", "rleaky_one_to_one", "synaptic"])
@pytest.mark.parametrize("readout", ["membrane", "spike_count"])
def test_subtract_reset_neurons_export_exactly_and_import_back(recordings, tmp_path, neuron, overrides, kind,
                                                               readout):
    """Subtract reset (scnn's default), every neuron but ALIF, both readouts: the NIR graph computes scnn's
    spikes and logits (interpreter), and scnn's importer rebuilds the same network."""
    steps = 6
    model = seeded("4C5-32FC-10FC", num_steps=steps, neuron=neuron, beta=0.8, threshold=0.3, readout=readout,
                   per_channel_beta=True, **overrides)
    with torch.no_grad():  # distinct per-channel betas, so per-channel values must travel exactly
        core = next(getattr(model.blocks[0].activation, n) for n in ("leaky", "rleaky", "synaptic")
                    if hasattr(model.blocks[0].activation, n))
        core.beta.copy_(torch.linspace(0.6, 0.95, core.beta.numel()).reshape(core.beta.shape))
    graph = export_nir(model)
    assert graph.metadata["dt"] == DT and graph.metadata["num_steps"] == steps
    assert graph.metadata["readout"] == readout
    np.testing.assert_allclose(1 - DT / graph.nodes["membrane0"].tau[:, 0, 0], core.beta.reshape(-1).numpy(),
                               rtol=1e-6)  # beta = 1 - dt / tau, per channel
    out_source = next(s for s, t in graph.edges if t == "output")
    assert out_source == ("membrane2" if readout == "membrane" else "spike2")
    if neuron == "synaptic":
        np.testing.assert_allclose(1 - DT / graph.nodes["synaptic1"].tau, 0.6, rtol=1e-6)  # alpha
    if neuron == "rleaky":
        expected = {True: ("Conv2d", "Affine"), False: ("Scale", "Scale")}[overrides == {}]
        assert (type(graph.nodes["recurrent0"]).__name__, type(graph.nodes["recurrent1"]).__name__) == expected
    assert_graph_runs_as_scnn(model, graph, recordings, steps)
    imported = assert_round_trip(model, graph, recordings, tmp_path, kind)
    assert imported.config.readout == readout and imported.config.reset_mechanism == "subtract"


def test_zero_reset_leaky_exports_as_lif_and_imports_back(recordings, tmp_path):
    model = seeded("4C5-32FC-10FC", num_steps=6, reset_mechanism="zero", readout="spike_count", beta=0.8,
                   threshold=0.3)
    graph = export_nir(model)
    assert [type(graph.nodes[n]).__name__ for n in spike_nodes(graph)] == ["LIF"] * 3
    assert_graph_runs_as_scnn(model, graph, recordings, 6)
    assert_round_trip(model, graph, recordings, tmp_path, "LIF")


# --------------------------------------------------------------------------- the streaming presets


def test_streaming_rleaky_preset_exports_exactly_and_imports_back(recordings, tmp_path):
    """Frames encoding (one [1, F, 1] frame per step), padded frequency convolution, recurrent hidden
    layers and the leaky membrane readout: all expressible."""
    model = seeded("streaming_rleaky", input_shape=(1, 32, 32), channels=4, hidden=(32, 24), threshold=0.5)
    graph = export_nir(model)
    assert graph.metadata["encoding"] == "frames" and graph.metadata["num_steps"] == 32
    assert tuple(graph.nodes["input"].input_type["input"]) == (1, 32, 1)
    # The (5, 1) frequency kernel travels as a 5x5 kernel zero outside its middle column, padded (2, 2): the
    # same convolution on a one-frame input (nir 1.0.8 infers a non-square kernel's output shape wrongly).
    conv = graph.nodes["conv0"]
    assert tuple(np.asarray(conv.padding).reshape(-1)) == (2, 2) and conv.weight.shape == (4, 1, 5, 5)
    np.testing.assert_array_equal(conv.weight[:, :, :, 2], model.blocks[0].synapse.weight[:, :, :, 0].detach())
    assert not np.any(np.delete(conv.weight, 2, axis=3))
    assert tuple(conv.output_type["output"]) == (4, 32, 1)
    assert type(graph.nodes["recurrent1"]).__name__ == "Affine"
    output = assert_graph_runs_as_scnn(model, graph, recordings, 32, frames=True)
    ran = run_nir(graph, recordings.permute(3, 0, 1, 2).unsqueeze(-1))
    torch.testing.assert_close(ran["output"], output.membrane, rtol=1e-5, atol=1e-5)  # per-frame evidence
    imported = assert_round_trip(model, graph, recordings, tmp_path, "RLeaky")
    assert type(imported).__name__ == "StreamingNet"
    assert imported.config.readout_beta == pytest.approx(model.config.readout_beta)


@pytest.mark.parametrize("inputs", ["frames", "frames_built_on_the_features", "sequence"])
def test_spec_nets_fed_step_by_step_export_and_import_back(recordings, tmp_path, inputs):
    """A spec net fed frame by frame (encoding "frames"; built on one frame, or on the whole features as
    train() builds it, its 5x5 kernel then 5x1) or given a sequence (input_kind "sequence"): the graph's Input
    is one step's input; rate encoding (random) is refused."""
    if inputs.startswith("frames"):
        if inputs == "frames":
            model = seeded("24FC-10FC", input_shape=(1, 32, 1), encoding="frames", neuron="rleaky", threshold=0.5)
        else:
            model = seeded("4C5-24FC-10FC", input_shape=(1, 32, 32), encoding="frames", threshold=0.3)
            assert model.blocks[0].synapse.kernel_size == (5, 1)
        x, steps = recordings, recordings.shape[-1]
        sequence = recordings.permute(3, 0, 1, 2).unsqueeze(-1)
        inputs = "frames"
    else:
        model = seeded("4C5-24FC-10FC", input_shape=(1, 32, 32), input_kind="sequence", num_steps=5,
                       neuron="synaptic", threshold=0.3)
        sequence = x = torch.stack([recordings * (0.6 + 0.2 * t) for t in range(5)])
        steps = 5
    graph = export_nir(model)
    assert graph.metadata["encoding"] == inputs and graph.metadata["model"] == "spec_net"
    ran = run_nir(graph, sequence)
    output = scnn_run(model, x)
    for name, mine in zip(spike_nodes(graph), output.layer_spikes):
        torch.testing.assert_close(ran[name], mine.float(), rtol=0, atol=0)
        assert int(mine.sum()) > 0
    assert ran["output"].shape[0] == steps
    torch.testing.assert_close(ran["output"].sum(0), output.logits, rtol=1e-5, atol=1e-4)
    nir.write(tmp_path / "model.nir", graph)
    imported = import_nir(nir.read(tmp_path / "model.nir"))
    assert (imported.config.encoding, imported.config.input_kind) == (model.config.encoding, model.config.input_kind)
    torch.testing.assert_close(scnn_run(imported, x).logits, output.logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="encoding 'rate' is not part of a NIR graph"):
        export_nir(seeded("model_b", encoding="rate"))


def test_alif_is_refused_naming_the_layer():
    with pytest.raises(ValueError, match="layer 1 is an ALIF .*NIR has no adaptive threshold"):
        export_nir(seeded("streaming", input_shape=(1, 32, 32), channels=4, hidden=(16,)))
    with pytest.raises(ValueError, match="layer 0 is an ALIF"):
        export_nir(seeded("6C3-16FC-10FC", neuron="alif", reset_mechanism="zero", readout="spike_count"))


# --------------------------------------------------------------------------- the zero reset NIR cannot express


@pytest.mark.parametrize("neuron,options", [("rleaky", {}), ("synaptic", {"alpha": 0.6})])
def test_zero_reset_rleaky_and_synaptic_are_refused_and_why(recordings, neuron, options):
    """scnn's RLeaky/Synaptic zero reset (snntorch's reset_delay=True) holds the membrane at zero on the step
    after a spike; the same layer in snntorch's NIR form, read by snntorch.import_from_nir, resets at once
    and keeps that step's input: different spikes. So the exporter refuses, naming the layer."""
    model = seeded("24FC-10FC", input_shape=(1, 32, 32), num_steps=8, neuron=neuron, reset_mechanism="zero",
                   readout="spike_count", beta=0.8, threshold=0.3, neuron_options=options)
    with pytest.raises(ValueError, match=f"layer 0 {'RLeaky' if neuron == 'rleaky' else 'Synaptic'} uses the "
                                         "zero reset.*input included"):
        export_nir(model)
    # The graph snntorch's exporter would write for this layer (LIF + recurrent Affine / CubaLIF):
    linear, core = model.blocks[0].synapse[-1], model.blocks[0].activation
    n, beta, thr = 24, 0.8, 0.3
    tau_mem = np.full(n, DT / (1 - beta))
    neuron_node = (nir.LIF(tau=tau_mem, r=tau_mem / DT, v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                           v_reset=np.zeros(n)) if neuron == "rleaky" else
                   nir.CubaLIF(tau_syn=np.full(n, DT / 0.4), tau_mem=tau_mem, r=tau_mem / DT, v_leak=np.zeros(n),
                               v_threshold=np.full(n, thr), w_in=np.full(n, 1 / 0.4), v_reset=np.zeros(n)))
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 32, 32])}),
             "flat": nir.Flatten(input_type={"input": np.array([1, 32, 32])}, start_dim=0),
             "fc": nir.Affine(weight=linear.weight.detach().numpy(), bias=linear.bias.detach().numpy()),
             "neuron": neuron_node, "output": nir.Output(output_type={"output": np.array([n])})}
    edges = [("input", "flat"), ("flat", "fc"), ("fc", "neuron"), ("neuron", "output")]
    if neuron == "rleaky":
        rec = core.rleaky.recurrent
        nodes["rec"] = nir.Affine(weight=rec.weight.detach().numpy(), bias=rec.bias.detach().numpy())
        edges += [("neuron", "rec"), ("rec", "neuron")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    with pytest.raises(ValueError, match="node 'neuron' is a CubaLIF" if neuron == "synaptic"
                       else "LIF node 'neuron' has a recurrent edge"):
        import_nir(graph, num_steps=8)
    x = recordings.unsqueeze(0).expand(8, *recordings.shape)
    mine = scnn_run(model, recordings).layer_spikes[0]
    if neuron == "synaptic":
        theirs = snntorch_steps(graph, x)[0].reshape(8, SAMPLES, n)
    else:  # what snntorch's importer means this subgraph to be (see the interpreter test): RLeaky, reset at once
        import snntorch

        twin = snntorch.RLeaky(beta=beta, threshold=thr, linear_features=n, reset_mechanism="zero",
                               reset_delay=False)
        twin.recurrent.load_state_dict(core.rleaky.recurrent.state_dict())
        with torch.no_grad():
            current = linear(recordings.flatten(1))
            spike = membrane = torch.zeros(SAMPLES, n)
            steps = []
            for _ in range(8):
                spike, membrane = twin(current, spike, membrane)
                steps.append(spike)
        theirs = torch.stack(steps)
    assert int(mine.sum()) > 0 and int(theirs.sum()) > 0
    assert not torch.equal(theirs, mine), "snntorch's NIR reading of the zero reset differs from scnn's neuron"


def test_export_nir_command_writes_a_streaming_model(tmp_path):
    """`scnn export-nir` on a checkpoint of the streaming RLeaky preset (seeded, untrained)."""
    from scnn.cli import main as scnn
    from scnn.io import save_checkpoint
    from scnn.models.registry import model_to_dict

    model = seeded("streaming_rleaky", input_shape=(1, 32, 32), channels=4, hidden=(16,))
    checkpoint = tmp_path / "best.pt"
    # What load_trained_model requires; the export reads only the model (no data are loaded).
    save_checkpoint(checkpoint, {"model": model_to_dict(model), "model_state": model.state_dict(),
                                 "data_config": {}, "normalizer": None})
    path = scnn(["export-nir", str(checkpoint), str(tmp_path / "model.nir")])
    graph = nir.read(path)
    assert graph.metadata["encoding"] == "frames"
    assert {"membrane1", "spike1", "reset1", "recurrent1"} <= set(graph.nodes)


def test_graphs_scnn_cannot_import_are_refused_naming_the_node():
    """Hand-written graphs: a LI + Threshold neuron without its reset edge, a nested subgraph (snntorch's
    RLeaky export), a non-spiking LI readout, a branching graph."""
    n = 4

    def graph(nodes, edges):
        head = {"in": nir.Input(input_type={"input": np.array([3])}),
                "fc": nir.Affine(weight=np.ones((n, 3), np.float32), bias=np.zeros(n, np.float32)),
                "out": nir.Output(output_type={"output": np.array([n])})}
        return nir.NIRGraph(nodes={**head, **nodes}, edges=[("in", "fc")] + edges, type_check=False)

    li = nir.LI(tau=np.full(n, 2 * DT), r=np.full(n, 2.0), v_leak=np.zeros(n))
    spike = nir.Threshold(threshold=np.full(n, 0.5))
    no_reset = graph({"mem": li, "spk": spike, "rec": nir.Scale(scale=np.full(n, 0.2))},
                     [("fc", "mem"), ("mem", "spk"), ("spk", "rec"), ("rec", "mem"), ("spk", "out")])
    with pytest.raises(ValueError, match="neuron 'mem' has no Scale\\(-threshold\\) reset edge from 'spk'"):
        import_nir(no_reset, num_steps=3)
    nested = graph({"sub": nir.NIRGraph(nodes={}, edges=[], type_check=False)}, [("fc", "sub"), ("sub", "out")])
    with pytest.raises(ValueError, match="node 'sub' is a nested NIRGraph"):
        import_nir(nested, num_steps=3)
    readout = graph({"mem": li}, [("fc", "mem"), ("mem", "out")])
    with pytest.raises(ValueError, match="the graph must end in a neuron"):
        import_nir(readout, num_steps=3)
    branching = graph({"a": nir.Threshold(threshold=np.ones(n)), "b": nir.Threshold(threshold=np.ones(n))},
                      [("fc", "a"), ("fc", "b"), ("a", "out"), ("b", "out")])
    with pytest.raises(ValueError, match="feed 2 separate nodes"):
        import_nir(branching, num_steps=3)
