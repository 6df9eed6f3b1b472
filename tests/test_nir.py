"""NIR round trips of spec nets with Leaky neurons: scnn -> NIR -> snntorch.import_from_nir, NIR -> scnn, and
clear errors for what NIR cannot express, on FSDD test recordings."""

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir", reason="the NIR tests need the package 'nir' (requirements.txt)")
pytest.importorskip("nirtorch", reason="snntorch's NIR importer needs 'nirtorch' (requirements.txt)")

from scnn.interop.nir import DT, export_nir, import_nir  # noqa: E402
from scnn.models import create_model  # noqa: E402

warnings.filterwarnings("ignore", module="snntorch")
STEPS = 5


def snntorch_run(graph, x):
    """snntorch.import_from_nir's network, stepped STEPS times per sample with the static input (one sample at a
    time: snntorch maps NIR's Flatten, whose dims exclude the batch, to torch's, whose dims include it).
    Returns per-layer spikes [T, B, ...] in graph order."""
    import snntorch
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "replace rnn subgraph with nirgraph"
        net = import_from_nir(graph)
    leaky = [m for m in net.modules() if isinstance(m, snntorch.Leaky)]
    per_sample = []
    for sample in x:
        snntorch.utils.reset(net)
        recorded = [[] for _ in leaky]
        hooks = [m.register_forward_hook(lambda mod, args, out, i=i: recorded[i].append(
            (out[0] if isinstance(out, tuple) else out).detach().reshape(-1))) for i, m in enumerate(leaky)]
        with torch.no_grad():
            for _ in range(STEPS):
                net(sample[None])
        for hook in hooks:
            hook.remove()
        per_sample.append([torch.stack(r) for r in recorded])  # [T, neurons] per layer
    return [torch.stack([s[layer] for s in per_sample], 1) for layer in range(len(leaky))]


@pytest.fixture(scope="module")
def zero_reset_run(tiny_fsdd, tmp_path_factory):
    """Model B with the zero reset and the spike-count readout (what NIR expresses), one epoch on FSDD."""
    from scnn.train import TrainConfig, train

    torch.set_num_threads(1)
    data_config, data = tiny_fsdd
    folder = tmp_path_factory.mktemp("nir_run")
    train(TrainConfig(model="model_b", epochs=1, batch_size=16, model_overrides={
        "num_steps": STEPS, "reset_mechanism": "zero", "readout": "spike_count", "beta": 0.75, "threshold": 0.5}),
          data_config, folder, progress=False, data=data)
    return folder, data


def test_scnn_to_nir_to_snntorch_gives_identical_spikes_and_predictions(zero_reset_run, tmp_path):
    from scnn.cli import main as scnn
    from scnn.train.evaluate import load_trained_model

    folder, data = zero_reset_run
    path = scnn(["export-nir", str(folder / "best.pt"), str(tmp_path / "model.nir")])
    graph = nir.read(path)
    assert graph.metadata["dt"] == DT and graph.metadata["num_steps"] == STEPS
    lif = graph.nodes["lif0"]
    np.testing.assert_allclose(1 - DT / lif.tau, 0.75, rtol=1e-6)  # beta = 1 - dt / tau
    model, _ = load_trained_model(folder / "best.pt")
    x = data.test[0][:8]
    with torch.no_grad():
        output = model(x, record=True)
    theirs = snntorch_run(graph, x)
    assert len(theirs) == len(output.layer_spikes) == 3
    for mine, other in zip(output.layer_spikes, theirs):
        torch.testing.assert_close(other, mine.reshape(mine.shape[0], mine.shape[1], -1).float(), rtol=0, atol=0)
    assert all(int(s.sum()) > 0 for s in output.layer_spikes), "every layer spikes"
    np.testing.assert_array_equal(theirs[-1].sum(0).argmax(1).numpy(), output.logits.argmax(1).numpy())


def test_nir_to_scnn_gives_the_same_network(zero_reset_run, tmp_path):
    """scnn's file read back, and a graph written by hand as another tool would: scnn's import runs what
    snntorch's import runs."""
    from scnn.interop.nir import export_nir_checkpoint
    from scnn.train.evaluate import load_trained_model

    folder, data = zero_reset_run
    graph = nir.read(export_nir_checkpoint(folder / "best.pt", tmp_path / "model.nir"))
    original, _ = load_trained_model(folder / "best.pt")
    imported = import_nir(graph)
    x = data.test[0][:8]
    with torch.no_grad():
        a, b = original(x, record=True), imported(x, record=True)
    torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=0)
    for mine, theirs in zip(a.layer_spikes, b.layer_spikes):
        torch.testing.assert_close(theirs, mine, rtol=0, atol=0)

    rng = np.random.default_rng(0)
    hand = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([1, 32, 32])}),
        "flat": nir.Flatten(input_type={"input": np.array([1, 32, 32])}, start_dim=0),
        "fc": nir.Affine(weight=rng.normal(0, 0.1, (20, 1024)).astype(np.float32),
                         bias=np.zeros(20, np.float32)),
        "neuron": nir.LIF(tau=np.full(20, 4 * DT), r=np.full(20, 4.0), v_leak=np.zeros(20),
                          v_threshold=np.full(20, 0.8)),
        "out": nir.Output(output_type={"output": np.array([20])})},
        edges=[("in", "flat"), ("flat", "fc"), ("fc", "neuron"), ("neuron", "out")])
    model = import_nir(hand, num_steps=STEPS)
    assert model.config.beta == pytest.approx(0.75) and model.config.spec == "20FC"
    with torch.no_grad():
        mine = model(x, record=True).layer_spikes[0]
    theirs = snntorch_run(hand, x)[0]
    torch.testing.assert_close(theirs, mine.float(), rtol=0, atol=0)
    assert int(mine.sum()) > 0


def test_what_nir_cannot_express_is_refused_naming_the_layer():
    # The subtract reset, once refused here, is now exact as LI + Threshold + Scale(-threshold) (every neuron,
    # checked spike for spike in tests/test_nir_neurons.py); Model B's defaults export with the membrane readout.
    graph = export_nir(create_model("model_b"))
    assert ("membrane2", "output") in graph.edges and ("reset0", "membrane0") in graph.edges
    with pytest.raises(ValueError, match="layer 2 is read out by its membrane"):
        export_nir(create_model("model_b", reset_mechanism="zero"))
    with pytest.raises(ValueError, match="layer 0 has MaxPool2d; NIR has no max pooling"):
        export_nir(create_model("6C3-P2-32FC-10FC", reset_mechanism="zero", readout="spike_count"))
    with pytest.raises(ValueError, match="not spiking"):
        export_nir(create_model("control_cnn"))
    cuba = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=np.ones((2, 4), np.float32), bias=np.zeros(2, np.float32)),
        "syn": nir.CubaLIF(tau_syn=np.full(2, 2e-4), tau_mem=np.full(2, 2e-4), r=np.full(2, 2.0),
                           v_leak=np.zeros(2), v_threshold=np.ones(2)),
        "out": nir.Output(output_type={"output": np.array([2])})},
        edges=[("in", "fc"), ("fc", "syn"), ("syn", "out")])
    with pytest.raises(ValueError, match="node 'syn' is a CubaLIF"):
        import_nir(cuba, num_steps=3)
    with pytest.raises(ValueError, match="does not say its number of steps"):
        import_nir(cuba)
