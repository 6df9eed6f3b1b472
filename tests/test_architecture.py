"""The package's extension points and its shape: a dataset and a neuron registered from a test
train and evaluate through the public API; no import cycles; run configs; old checkpoints."""

import ast
from pathlib import Path

import pytest
import torch

from scnn.data import DATASETS, DataConfig, DatasetListing, Recording, register_dataset
from scnn.data.fixtures import write_tone
from scnn.io import load_checkpoint, save_checkpoint
from scnn.neurons import NEURONS, SpikingNeuron, make_surrogate, register_neuron
from scnn.train import TrainConfig, evaluate_checkpoint, load_trained_model, train

PACKAGE = Path(__file__).resolve().parents[1] / "scnn"


# --------------------------------------------------------------------------- import cycles


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> scnn modules it imports (every import statement, those inside functions too).

    A package's submodule importing its own package (``scnn.data.fsdd`` -> ``scnn.data``) is not an
    edge: Python runs the package's __init__ first, so that is no cycle at import time.
    """
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_inside_scnn():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and "scnn.neurons.leaky" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_engine_and_the_registries_import_no_neuron_and_no_model():
    graph = import_graph(PACKAGE)
    engine = [name for name in graph if name.startswith("scnn.engine")]
    assert not any(target.startswith("scnn.neurons") for name in engine for target in graph[name])
    assert not any(target.startswith("scnn.models.") and target != "scnn.models.registry"
                   for target in graph["scnn.models.registry"])
    assert graph["scnn.data.registry"] == {"scnn.registry"}


# --------------------------------------------------------------------------- extension points


@pytest.fixture
def toy_dataset(tmp_path):
    """A dataset registered from the test: tones of three pitches, four speakers, an official split."""
    folder = tmp_path / "tones"
    folder.mkdir()
    recordings = []
    for label, frequency in enumerate((300.0, 700.0, 1500.0)):
        for speaker in ("ann", "bob", "cy", "dee"):
            for take in range(8):
                path = folder / f"{label}_{speaker}_{take}.wav"
                write_tone(path, frequency * (1 + 0.02 * take), seed=take, seconds=0.4)
                recordings.append(Recording(path, label, speaker, take, "test" if take < 2 else "train"))

    @register_dataset("toy_tones")
    def toy_tones(config) -> DatasetListing:
        return DatasetListing(list(recordings), ["low", "mid", "high"], folder)

    yield "toy_tones"
    DATASETS.pop("toy_tones")


class IntegrateAndFire(SpikingNeuron):
    """A neuron registered from a test: integrate-and-fire without leak, reset by subtraction.

    U[t] = U[t-1] + I[t] - S[t-1] * thr,   S[t] = H(U[t] - thr) (fast-sigmoid surrogate).
    Not a first-order LIF with a leak the engine implements, so lif_parameters() stays None.
    """

    def __init__(self, threshold: float = 1.0, slope: float = 25.0, **unused_common_options):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.spike_function = make_surrogate("fast_sigmoid", slope)
        self.register_state("membrane")
        self.steps_run = 0

    def _advance(self, membrane, spike, current):
        membrane = membrane + current - spike.detach() * self.threshold
        return membrane, self.spike_function(membrane - self.threshold)

    def forward(self, current, return_membrane=True, overwrite_current=False):
        membrane, spike = torch.zeros_like(current[0]), torch.zeros_like(current[0])
        spikes, membranes = [], []
        for current_t in current:
            membrane, spike = self._advance(membrane, spike, current_t)
            spikes.append(spike)
            membranes.append(membrane)
        self.steps_run += len(current)
        return torch.stack(spikes), torch.stack(membranes) if return_membrane else None

    def step(self, current):
        if self.membrane is None:
            self.membrane, self.spike = torch.zeros_like(current), torch.zeros_like(current)
        self.membrane, self.spike = self._advance(self.membrane, self.spike, current)
        return self.spike, self.membrane


@pytest.fixture
def toy_neuron():
    register_neuron("toy_if")(IntegrateAndFire)
    yield "toy_if"
    NEURONS.pop("toy_if")


def test_a_registered_dataset_and_neuron_train_and_evaluate(tmp_path, toy_dataset, toy_neuron):
    data_config = DataConfig(dataset=toy_dataset, cache_dir=str(tmp_path / "cache"), val_fraction=0.2)
    train_config = TrainConfig(model="6C3-32FC-3FC", model_overrides={"neuron": toy_neuron, "num_steps": 3},
                               epochs=1, batch_size=8, threads=1)
    results = train(train_config, data_config, tmp_path / "run", progress=False)
    # 4 speakers x 3 classes: 6 training takes (5 of 24 per class to validation) and 2 test takes each
    assert results["split_sizes"] == {"train": 57, "val": 15, "test": 24}
    assert results["run_config"]["model"] == {"name": "6C3-32FC-3FC", "neuron": "toy_if", "num_steps": 3}

    model, _ = load_trained_model(tmp_path / "run" / "best.pt")
    neurons = model.neurons()
    assert len(neurons) == 3 and all(type(n) is IntegrateAndFire for n in neurons)  # one per block
    evaluation = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "eval", progress=False)
    assert evaluation["num_test"] == 24 and evaluation["test_accuracy"] == results["test_accuracy"]
    assert all(n.steps_run == 0 for n in neurons)  # the evaluation rebuilt its own model from the checkpoint

    from scnn.quant import quantize

    with pytest.raises(ValueError, match="cannot quantise neuron IntegrateAndFire"):
        quantize(model)


def test_a_registered_neuron_streams_as_it_runs_a_sequence(toy_neuron):
    from scnn.models import create_model
    from scnn.neurons import reset_net

    torch.manual_seed(0)
    model = create_model("4C3-16FC-3FC", neuron=toy_neuron, num_steps=5, input_shape=(1, 8, 8)).eval()
    x = torch.randn(2, 1, 8, 8) * 3
    with torch.no_grad():
        offline = model(x)
        reset_net(model)
        steps = [model.step(x) for _ in range(5)]
    assert torch.equal(torch.cat([s.spikes for s in steps]), offline.spikes)
    assert torch.allclose(torch.cat([s.membrane for s in steps]), offline.membrane)


def test_unknown_names_list_what_is_registered(tmp_path):
    from scnn.data import prepare_data
    from scnn.models import create_model

    with pytest.raises(ValueError, match="unknown neuron 'nope'; registered: .*leaky"):
        create_model("model_b", neuron="nope")
    with pytest.raises(ValueError, match="unknown dataset 'nope'; registered: folders, fsdd"):
        prepare_data(DataConfig(dataset="nope"))


def test_sequence_models_refuse_static_input():
    from scnn.models import create_model

    model = create_model("model_b", input_kind="sequence")
    assert model.input_kind == "sequence"
    with pytest.raises(ValueError, match=r"input_kind 'sequence' takes \[T, B, C, H, W\]"):
        model(torch.zeros(2, 1, 32, 32))
    assert model(torch.zeros(4, 2, 1, 32, 32)).spikes.shape == (4, 2, 10)
    with pytest.raises(ValueError, match="input_kind must be one of"):
        create_model("model_b", input_kind="frames")


# --------------------------------------------------------------------------- run configs


def test_run_config_layers_file_flags_and_overrides(tmp_path):
    from scnn.train import load_run_config

    (tmp_path / "run.yaml").write_text("model:\n  name: model_a\n  num_steps: 25\ntrain:\n  epochs: 40\n  lr: 0.01\n")
    config = load_run_config(tmp_path / "run.yaml", ["model.beta=0.7", "train.epochs=3", "data.split=speaker"],
                             updates={"train": {"epochs": 7, "seed": 5}})
    assert config.model == {"name": "model_a", "num_steps": 25, "beta": 0.7}
    assert (config.train.epochs, config.train.lr, config.train.seed) == (3, 0.01, 5)  # override > flags > file
    assert config.train.model == "model_a" and config.train.model_overrides == {"num_steps": 25, "beta": 0.7}
    assert config.data.split == "speaker" and config.data.dataset == "fsdd"
    (tmp_path / "run.toml").write_text('[model]\nname = "model_a"\nnum_steps = 25\n[train]\nepochs = 40\nlr = 0.01\n')
    from_toml = load_run_config(tmp_path / "run.toml", ["model.beta=0.7", "train.epochs=3", "data.split=speaker"],
                                updates={"train": {"epochs": 7, "seed": 5}})
    assert from_toml == config


@pytest.mark.parametrize("overrides, message", [
    (["train.epcohs=3"], "train.epcohs: no such option; valid: epochs, batch_size"),
    (["train.epochs=abc"], "train.epochs: expected int, got 'abc'"),
    (["train.epochs=0"], "train.epochs must be >= 1; got 0"),
    (["train.batch_size=-3"], "train.batch_size must be >= 1; got -3"),
    (["model.bogus=1"], "model 'model_b' has no option(s) ['bogus']"),
    (["model.name=6C3-XX-10FC"], "cannot parse layer 'XX'"),
    (["data.split=diagonal"], "data.split must be one of official, speaker, random, group; got 'diagonal'"),
    (["loss.name=x"], "unknown section(s) loss"),
    (["train.epochs"], "overrides must look like section.key=value"),
])
def test_run_config_errors_name_the_key(overrides, message):
    from scnn.train import load_run_config

    with pytest.raises(ValueError) as error:
        load_run_config(None, overrides)
    assert message in str(error.value)


def test_every_shipped_config_loads():
    from scnn.train import load_run_config

    configs = sorted((PACKAGE.parent / "configs").glob("*.yaml"))
    assert len(configs) >= 7
    for path in configs:
        config = load_run_config(path)
        assert config.model["name"] in path.stem.replace("fsdd_", ""), path


# --------------------------------------------------------------------------- checkpoints of the first version


def test_first_version_checkpoints_still_load_and_newer_ones_fail_clearly(tmp_path, toy_dataset):
    from scnn.train import RunConfig

    data_config = DataConfig(dataset=toy_dataset, cache_dir=str(tmp_path / "cache"))
    train(TrainConfig(model="4C3-16FC-3FC", model_overrides={"num_steps": 2}, epochs=1, threads=1), data_config,
          tmp_path / "run", progress=False)
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    first_version = {key: value for key, value in checkpoint.items() if key != "run_config"}
    first_version["checkpoint_version"] = 1
    first_version["data_config"] = {("layout" if k == "dataset" else k): v for k, v in checkpoint["data_config"].items()}
    for key in ("neuron", "neuron_options", "input_kind"):
        first_version["model"]["config"].pop(key)
    save_checkpoint(tmp_path / "v1.pt", first_version)
    model, loaded = load_trained_model(tmp_path / "v1.pt")
    assert RunConfig.from_checkpoint(loaded) == RunConfig.from_checkpoint(checkpoint)
    evaluation = evaluate_checkpoint(tmp_path / "v1.pt", tmp_path / "eval", progress=False)
    assert evaluation["num_test"] == 24

    save_checkpoint(tmp_path / "v9.pt", {**checkpoint, "checkpoint_version": 9})
    with pytest.raises(ValueError, match="format version 9, newer than this scnn reads"):
        load_trained_model(tmp_path / "v9.pt")


# --------------------------------------------------------------------------- input encodings


def test_rate_encoding_is_seeded_bernoulli_of_the_squashed_features():
    from scnn.features.encoders import ENCODERS, get_encoder

    assert set(ENCODERS) >= {"direct", "rate"} and get_encoder("rate").kind == "sequence"
    x = torch.tensor([[-2.0, 0.0, 3.0]])
    torch.manual_seed(0)
    spikes = get_encoder("rate").encode(x, 4000)
    assert spikes.shape == (4000, 1, 3) and set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(spikes.mean(0), torch.sigmoid(x), atol=0.02)
    torch.manual_seed(0)
    assert torch.equal(get_encoder("rate").encode(x, 4000), spikes)
    with pytest.raises(ValueError, match="unknown encoding 'morse'; registered: delta, direct, frames, rate"):
        get_encoder("morse")


def test_delta_encoding_is_snntorchs_delta_of_the_frames_and_causal():
    import snntorch.spikegen as spikegen

    from scnn.features.encoders import DELTA_THRESHOLD, get_encoder
    from scnn.models import create_model

    x = torch.randn(3, 1, 20, 16, generator=torch.Generator().manual_seed(0))
    spikes = get_encoder("delta").encode(x, 99)
    assert get_encoder("delta").kind == "sequence" and spikes.shape == (16, 3, 1, 20, 1)
    frames = x.permute(3, 0, 1, 2).unsqueeze(-1)
    expected = spikegen.delta(frames, threshold=DELTA_THRESHOLD, off_spike=True)
    assert torch.equal(spikes, expected)
    assert set(spikes.unique().tolist()) == {-1.0, 0.0, 1.0}
    later = x.clone()
    later[..., 9] += 5.0  # frame 9 changes: steps 0-8 do not, steps 9 and 10 do
    changed = get_encoder("delta").encode(later, 99)
    assert torch.equal(changed[:9], spikes[:9]) and not torch.equal(changed[9:11], spikes[9:11])
    model = create_model("16FC-3FC", input_shape=(1, 20, 1), encoding="delta", threshold=0.2)
    output = model(x)
    output.logits.sum().backward()
    weight = next(model.blocks[0].parameters())
    assert output.logits.shape == (3, 3) and weight.grad.abs().sum() > 0


def test_a_rate_encoded_model_trains_and_counts_its_first_layer_as_spike_driven(tmp_path, toy_dataset):
    from scnn.metrics import profile_model

    data_config = DataConfig(dataset=toy_dataset, cache_dir=str(tmp_path / "cache"))
    results = train(TrainConfig(model="4C3-16FC-3FC", model_overrides={"num_steps": 4, "encoding": "rate"},
                                epochs=1, threads=1), data_config, tmp_path / "run", progress=False)
    assert 0.0 <= results["test_accuracy"] <= 1.0
    model, _ = load_trained_model(tmp_path / "run" / "best.pt")
    profile = profile_model(model, torch.randn(6, *model.config.input_shape))
    assert profile.synaptic_operations["effective_macs"] == 0  # every layer, the first too, is fed 0/1 spikes
    assert profile.synaptic_operations["effective_acs"] > 0


# --------------------------------------------------------------------------- quantisers


def test_weight_quantizers_are_chosen_by_name():
    from scnn.models import create_model
    from scnn.quant import QuantConfig, quantize
    from scnn.quant.integer import export_integer
    from scnn.quant.quantizers import WEIGHT_QUANTIZERS

    assert WEIGHT_QUANTIZERS["fixed_point"].integer_exact and not WEIGHT_QUANTIZERS["float_scale"].integer_exact
    torch.manual_seed(0)
    model = create_model("4C3-16FC-3FC", num_steps=2, input_shape=(1, 8, 8)).eval()
    x = torch.randn(4, 1, 8, 8)
    fixed, floating = quantize(model, calibration_data=x), quantize(model, weight_quant="float_scale",
                                                                    calibration_data=x)
    scale = floating.blocks[1].synapse.quant_weight().scale
    assert not torch.equal(torch.log2(scale), torch.round(torch.log2(scale)))  # a real scale, not 2^k
    fixed_scale = fixed.blocks[1].synapse.quant_weight().scale
    assert torch.equal(torch.log2(fixed_scale), torch.round(torch.log2(fixed_scale)))
    with torch.no_grad():
        assert floating(x).logits.shape == (4, 3)
    export_integer(fixed)
    with pytest.raises(ValueError, match="'float_scale' has no exact integer form"):
        export_integer(floating)
    with pytest.raises(ValueError, match="unknown weight quantiser 'ternary'; registered: fixed_point, float_scale"):
        QuantConfig(weight_quant="ternary")


# --------------------------------------------------------------------------- metrics


def test_metrics_by_name_and_one_registered_from_a_test():
    from scnn.metrics import METRICS, compute_metrics, profile_model, register_metric
    from scnn.models import create_model

    @register_metric("spikes_per_sample", "workload")
    def spikes_per_sample(activity, samples):
        return sum(float(layer.activation_output.sum()) for layer in activity) / samples

    try:
        torch.manual_seed(0)
        model = create_model("model_b", num_steps=3).eval()
        x = torch.randn(5, 1, 32, 32)
        values = compute_metrics(model, x)
        profile = profile_model(model, x)
        assert values["parameter_count"] == 692_678 and values["connection_sparsity"] == 0.0
        assert values["activation_sparsity"] == pytest.approx(profile.activation_sparsity["overall"])
        assert values["synaptic_operations"]["effective_acs"] == profile.synaptic_operations["effective_acs"]
        assert values["membrane_updates"] == 3 * (6 * 30 * 30 + 128 + 10)  # neurons x T, per sample
        with torch.no_grad():
            spikes = sum(float(s.sum()) for s in model(x, record=True).layer_spikes) / 5
        assert values["spikes_per_sample"] == pytest.approx(spikes)
        with pytest.raises(ValueError, match="workload metrics .* need samples"):
            compute_metrics(model, names=["activation_sparsity"])
    finally:
        METRICS.pop("spikes_per_sample")


# --------------------------------------------------------------------------- exports


def test_exports_are_registered_and_chosen_by_name(tmp_path):
    from scnn.models import create_model
    from scnn.quant import quantize
    from scnn.quant.exports import DEFAULT_EXPORTS, EXPORTS, register_export, run_exports
    from scnn.quant.workflow import QuantRunConfig

    assert set(DEFAULT_EXPORTS) <= set(EXPORTS)

    @register_export("shape_only")
    def shape_only(quantized, test_x, predictions, out_dir):
        (out_dir / "shape.txt").write_text(str(tuple(test_x.shape)))
        return {"path": "shape.txt", "predictions": predictions.tolist()}

    try:
        torch.manual_seed(0)
        model = create_model("4C3-16FC-3FC", num_steps=2, input_shape=(1, 8, 8)).eval()
        x = torch.randn(5, 1, 8, 8)
        quantized = quantize(model, calibration_data=x)
        results = run_exports(["integer", "shape_only"], quantized, x, tmp_path)
        assert results["integer"]["prediction_agreement"] == 1.0 and (tmp_path / "integer.npz").exists()
        with torch.no_grad():
            assert results["shape_only"]["predictions"] == quantized(x).logits.argmax(1).tolist()
        assert (tmp_path / "shape.txt").read_text() == "(5, 1, 8, 8)"
        with pytest.raises(ValueError, match="unknown export .nir_v9.; registered: .*integer"):
            QuantRunConfig(checkpoint="x.pt", exports=("integer", "nir_v9"))
    finally:
        EXPORTS.pop("shape_only")


# --------------------------------------------------------------------------- input kinds through train()


def test_a_spec_net_fed_frame_by_frame_trains_one_epoch_and_evaluates(tmp_path):
    """model.encoding=frames through train(): the data stay static [N, 1, 32, 32]; the network sees one frame per
    step, [T = 32, B, 1, 32, 1]; input_shape and num_classes come from the data (restating them is no change)."""
    from tests.test_training import quick_config, synthetic_data
    from scnn.train import evaluate

    data = synthetic_data()
    config = quick_config(epochs=1, model_overrides={"encoding": "frames", "input_shape": [1, 32, 32]})
    results = train(config, DataConfig(), tmp_path / "run", progress=False, data=data)
    model, checkpoint = load_trained_model(tmp_path / "run" / "best.pt")
    assert checkpoint["model"]["config"]["input_shape"] == (1, 32, 32) and model.input_kind == "sequence"
    with torch.no_grad():
        output = model(data.test[0], record=True)
    assert output.layer_spikes[0].shape[:2] == (32, len(data.test[1]))
    assert evaluate(model, *data.test, num_classes=4)["accuracy"] == results["test_accuracy"]
    with pytest.raises(ValueError, match=r"model.input_shape is set from the data \(\(1, 32, 32\)\), got"):
        train(quick_config(model_overrides={"encoding": "frames", "input_shape": (1, 32, 1)}), DataConfig(),
              tmp_path / "other", progress=False, data=data)
    with pytest.raises(ValueError, match="static features need a sequence encoding"):  # refused before training
        train(quick_config(model_overrides={"input_kind": "sequence"}), DataConfig(), tmp_path / "seq",
              progress=False, data=data)
    assert not (tmp_path / "seq" / "last.pt").exists()


def test_model_b_config_with_frames_override_trains_through_the_run_config(tmp_path, toy_dataset):
    """``scnn train --config configs/fsdd_model_b.yaml model.encoding=frames``, on the toy dataset, one epoch."""
    from scnn.train import load_run_config

    config = load_run_config(Path(__file__).resolve().parents[1] / "configs" / "fsdd_model_b.yaml",
                             ["model.encoding=frames", "train.epochs=1", "train.threads=1", f"data.dataset={toy_dataset}",
                              f"data.cache_dir={tmp_path / 'cache'}"])
    results = train(config.train, config.data, tmp_path / "run", progress=False)
    assert results["run_config"]["model"]["encoding"] == "frames"
    evaluation = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "eval", progress=False)
    assert evaluation["test_accuracy"] == results["test_accuracy"]
    model, _ = load_trained_model(tmp_path / "run" / "best.pt")
    frames = model.config.input_shape[-1]
    assert model.num_steps == frames and model.blocks[0].synapse.kernel_size == (3, 1)


# --------------------------------------------------------------------------- the neuron interface, kept


ROOT = PACKAGE.parent
BUILT_IN_NEURONS = ("leaky", "rleaky", "synaptic", "alif")


def neuron_internal_names() -> set[str]:
    """The names of a built-in neuron's insides: its child modules (the snntorch neuron inside Leaky, RLeaky and
    Synaptic) and the constants it has beyond a first-order LIF's (Synaptic's alpha, ALIF's rho and adaptation;
    the interface hands them out by ``neuron_parameters()``)."""
    from scnn.neurons import LifParameters

    names = set()
    for name in BUILT_IN_NEURONS:
        neuron_class = NEURONS[name]
        neuron = neuron_class(size=4) if neuron_class.takes_layer_size else neuron_class()
        names |= {child for child, _ in neuron.named_children()}
        names |= set(neuron.neuron_parameters()) - set(LifParameters.__dataclass_fields__)
    return names


def neuron_internal_reads(source: str, internals: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each place ``source`` reaches into a neuron: an attribute named in ``internals`` on
    anything but ``self`` (a class's own attribute of the same name is its own business), or
    getattr/hasattr/setattr/delattr of such a name, given as a constant or as a loop variable over a literal that
    holds one (``getattr(neuron, name) for name in ("leaky", "rleaky")``)."""
    tree = ast.parse(source)
    loop_names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name) \
                and isinstance(node.iter, (ast.Tuple, ast.List, ast.Set)) \
                and any(isinstance(item, ast.Constant) and item.value in internals for item in node.iter.elts):
            loop_names.add(node.target.id)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in internals \
                and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 2 \
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr"):
            name = node.args[1]
            if (isinstance(name, ast.Constant) and name.value in internals) or \
                    (isinstance(name, ast.Name) and name.id in loop_names):
                found.append((node.lineno, f"{node.func.id}(..., {ast.unparse(name)})"))
    return sorted(found)


def test_nothing_outside_the_neurons_reaches_into_a_neuron():
    """The engine, models, quantiser, integer reference, exports, metrics and scripts use the neuron interface
    (neuron_parameters(), reset_mechanism, step, recurrent_synapses(), ...), never a neuron's insides."""
    internals = neuron_internal_names()
    assert {"leaky", "rleaky", "synaptic", "alpha", "rho", "adaptation"} <= internals
    reads = []
    for folder in ("scnn", "experiments", "sweeps"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if PACKAGE / "neurons" not in path.parents:
                reads += [f"{path.relative_to(ROOT)}:{line} {what}"
                          for line, what in neuron_internal_reads(path.read_text(), internals)]
    assert not reads, "code outside scnn/neurons reaches into neurons:\n" + "\n".join(reads)


def test_the_internals_scan_finds_what_the_interface_replaced():
    """The scan flags the reads the neuron interface replaced (each was in scnn before it) and not a class's own
    attributes, a neuron's interface or the neuron names."""
    internals = {"leaky", "rleaky", "synaptic", "alpha", "rho", "adaptation"}
    old = '''
h, membranes[i] = block.activation.leaky(current, membranes[i])
reset_to_zero = neuron.rleaky.reset_mechanism == "zero"
alpha = neuron.alpha.detach()
self.register_buffer("adaptation", neuron.adaptation.clamp(min=0))
core = next(getattr(neuron, name) for name in ("leaky", "rleaky", "synaptic") if hasattr(neuron, name))
recurrent = hasattr(neuron, "rleaky")
'''
    assert [line for line, _ in neuron_internal_reads(old, internals)] == [2, 3, 4, 5, 6, 6, 7]
    fine = '''
self.synaptic = self.alpha * self.synaptic + current
parameters = neuron.neuron_parameters(); alpha = parameters["alpha"]
zero = neuron.reset_mechanism == "zero"; (recurrent,) = neuron.recurrent_synapses()
model = create_model("streaming", neuron="synaptic", conv_neuron="rleaky")
for name in ("leaky", "rleaky"):
    print(name)
'''
    assert neuron_internal_reads(fine, internals) == []


def _watch_neuron_reads(monkeypatch) -> list[str]:
    """Record every attribute of a neuron that code in scnn outside scnn/neurons reads and that is not the
    neuron interface (SpikingNeuron's members, nn.Module's, ``spike_function``, ``neuron_name``)."""
    import sys

    public = set(dir(SpikingNeuron)) | set(vars(torch.nn.Module())) | {"spike_function", "neuron_name"}
    package, neurons = str(PACKAGE), str(PACKAGE / "neurons")
    reads = []

    def getattribute(self, name):
        caller = sys._getframe(1)
        path = caller.f_code.co_filename
        if name not in public and path.startswith(package) and not path.startswith(neurons):
            reads.append(f"{Path(path).relative_to(ROOT)}:{caller.f_lineno} {type(self).__name__}.{name}")
        return object.__getattribute__(self, name)

    monkeypatch.setattr(SpikingNeuron, "__getattribute__", getattribute)
    return reads


@pytest.mark.parametrize("neuron", BUILT_IN_NEURONS)
def test_models_engine_quantiser_exports_and_metrics_read_neurons_only_through_the_interface(neuron, monkeypatch):
    """Run every consumer of a neuron on each built-in neuron while recording the neuron's attributes that code
    outside scnn/neurons reads: only the interface may be read."""
    from scnn.interop.nir import export_nir, import_nir
    from scnn.metrics import profile_model, snntorch_sequential
    from scnn.models import create_model
    from scnn.models.frame_runner import FrameRunner
    from scnn.models.reference import ReferenceNet
    from scnn.neurons import reset_net
    from scnn.quant import quantize

    torch.manual_seed(0)
    spec = create_model("4C3-16FC-3FC", neuron=neuron, num_steps=3, input_shape=(1, 8, 8)).eval()
    streaming = create_model("streaming", neuron=neuron, hidden=(8, 6)).eval()
    x = torch.randn(2, 1, 8, 8) * 3
    reads = _watch_neuron_reads(monkeypatch)
    with torch.no_grad():
        expected = spec(x, record=True)
        reference = ReferenceNet(spec)(x)
        reset_net(spec)
        spec.step(x)
        streaming(torch.randn(2, 1, 20, 5))
        reset_net(streaming)
        streaming.step(torch.randn(1, 1, 20))
        FrameRunner(streaming)
        quantize(spec)(x)
        profile_model(spec, x)
        if neuron != "alif":  # NIR cannot express ALIF (tests/test_nir_neurons.py); snntorch has no ALIF
            import_nir(export_nir(spec))
            snntorch_sequential(spec)
    assert torch.equal(reference.spikes, expected.spikes)  # the reference net runs every neuron (step)
    assert not reads, "neuron insides read from outside scnn/neurons:\n" + "\n".join(sorted(set(reads)))


def test_each_built_in_neuron_names_its_twin_frame_step_and_nir_writer():
    """One registration per consumer, keyed by the neuron's class; a subclass gets its base class's (nearest
    first), and a new registration for the subclass takes over."""
    from scnn.interop.nir import NIR_NEURONS
    from scnn.models.frame_runner import FRAME_STEPS
    from scnn.neurons import Leaky
    from scnn.quant.twin import QUANT_NEURONS, QuantLIF, quant_neuron, register_quant_neuron
    from scnn.quant import QuantConfig

    for name in BUILT_IN_NEURONS:
        assert NEURONS[name] in QUANT_NEURONS and NEURONS[name] in FRAME_STEPS and NEURONS[name] in NIR_NEURONS

    class QuieterLeaky(Leaky):
        pass

    assert type(quant_neuron(QuieterLeaky(), QuantConfig(), "layer 0")) is QuantLIF

    class QuantQuieterLeaky(QuantLIF):
        pass

    register_quant_neuron(QuieterLeaky)(QuantQuieterLeaky)
    try:
        assert type(quant_neuron(QuieterLeaky(), QuantConfig(), "layer 0")) is QuantQuieterLeaky
        assert type(quant_neuron(Leaky(), QuantConfig(), "layer 0")) is QuantLIF
    finally:
        QUANT_NEURONS.pop(QuieterLeaky)
