"""Every benchmark recipe (configs/gsc*, shd*, ssc*) trains one epoch on fixtures in the official formats."""

from pathlib import Path

import pytest

from scnn.data.fixtures import write_heidelberg_files, write_speech_commands_tree
from scnn.train import train
from scnn.train.run_config import load_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem.startswith(("gsc", "shd", "ssc")))
CLASSES = {"gsc35": 35, "gsc12": 12, "shd": 20, "ssc": 35}


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    write_speech_commands_tree(root / "gsc", {"train": 2, "val": 1, "test": 1}, seconds=0.2)
    write_heidelberg_files(root / "shd", "shd", {"train": 40, "test": 20}, spikes=200)
    write_heidelberg_files(root / "ssc", "ssc", {"train": 35, "val": 35, "test": 35}, spikes=200)
    return root


def test_every_benchmark_has_a_spiking_cnn_a_frame_by_frame_snn_and_an_ssm_recipe():
    # Named <benchmark>_<model> (test_architecture: the model's name is in the file's); the spiking CNNs are
    # presets of their spec strings (scnn/models/spec_net.py); "streaming" is the adaptive-LIF network fed
    # one frame (or event bin) per step.
    assert RECIPES == ["gsc12_cnn", "gsc12_ssm_small", "gsc12_streaming",
                       "gsc35_cnn", "gsc35_ssm_small", "gsc35_streaming",
                       "shd_cnn", "shd_ssm_small", "shd_streaming",
                       "ssc_cnn", "ssc_ssm_small", "ssc_streaming"]
    for recipe in RECIPES:
        if recipe.endswith("_streaming"):
            config = load_run_config(CONFIGS / f"{recipe}.yaml")
            assert config.model["name"] == "streaming" and config.train.model == "streaming"


@pytest.mark.slow  # twelve one-epoch trainings, about 60 s together on a free core
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_one_epoch_on_fixtures(recipe, fixture_data, tmp_path):
    benchmark = recipe.split("_")[0]
    folder = fixture_data / ("gsc" if benchmark.startswith("gsc") else benchmark)
    config = load_run_config(CONFIGS / f"{recipe}.yaml", [f"data.data_dir={folder}", f"data.cache_dir={tmp_path}",
                                                         "train.epochs=1", "train.threads=1", "train.batch_size=16"])
    results = train(config.train, config.data, tmp_path / "run", progress=False)
    assert len(results["per_class_accuracy"]) == CLASSES[benchmark]
    assert len(results["confusion_matrix"]) == CLASSES[benchmark]
    assert (tmp_path / "run" / "results.json").is_file()
    # A checkpoint alone rebuilds its data: the silence clips, the binned events.
    if recipe in ("gsc12_ssm_small", "shd_cnn", "shd_streaming"):
        from scnn.train.evaluate import evaluate_checkpoint

        again = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "eval", progress=False)
        assert again["test_accuracy"] == results["test_accuracy"] and again["test_set"]["differences"] == []
        assert again["test_set"]["digest"] == again["test_set"]["recorded_digest"] is not None


@pytest.mark.parametrize("preset, spec, shape, parameters", [
    ("gsc35_cnn", "16C3-P2-32C3-P2-128FC-35FC", (1, 40, 50), 369_891),
    ("gsc12_cnn", "16C3-P2-32C3-P2-128FC-12FC", (1, 40, 50), 366_924),
    ("shd_cnn", "16C3-P4-32C3-P2-128FC-20FC", (1, 140, 100), 728_404),
    ("ssc_cnn", "16C3-P4-32C3-P2-128FC-35FC", (1, 140, 100), 730_339)])
def test_recipe_cnn_presets_are_their_spec_strings(preset, spec, shape, parameters):
    from scnn.models import count_parameters, create_model, model_config

    family, config = model_config(preset)
    assert (family, config.spec, config.num_steps, config.beta) == ("spec_net", spec, 5, 0.5)
    model = create_model(preset, input_shape=shape)
    assert count_parameters(model) == parameters  # the README's recipe table
    recipe = load_run_config(CONFIGS / f"{preset}.yaml")
    assert recipe.model["name"] == preset


def test_recipe_cost_counts_the_recipe_model_and_extrapolates():
    from scnn.models import create_model
    from scnn.train.recipe_cost import recipe_cost

    config = load_run_config(CONFIGS / "shd_ssm_small.yaml", ["train.batch_size=4"])
    cost = recipe_cost(config, num_classes=20, train_size=30_000, batches=1)
    model = create_model("ssm_small", input_shape=(1, 140, 100), num_classes=20)
    assert cost["parameters"] == sum(p.numel() for p in model.parameters()) and cost["input_shape"] == [1, 140, 100]
    assert cost["timed_samples"] == 4 and cost["macs_per_sample"] == model.macs_per_sample()
    assert cost["seconds_per_epoch"] == pytest.approx(3 * cost["seconds_per_10k_samples"])
