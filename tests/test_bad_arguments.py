"""Issue #20, items 8 and 3: a bad argument ends in one line naming the option (or the file) and what it
allows, exit status 2, no traceback, before any data work; and without data and network, one line saying
what failed and both ways out.

The in-process table runs with $SCNN_DATA_DIR pointing at an empty folder: an option checked only after
data preparation would end in the data error instead of its own message (and none tries a download).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scnn.cli import main as scnn

REPO = Path(__file__).resolve().parents[1]
NOT_A_CHECKPOINT = "model: [unclosed\n"  # a text file where a checkpoint should be (torch.load: 4 lines of text)

# (argv, what the one line must say); {tmp} is the test's folder
BAD_ARGUMENTS = [
    # --feature: names and types where parsed (argparse), in every command that takes it
    (["train", "--feature", "bogus=1"], "argument --feature: bogus: no such feature parameter; valid: sample_rate"),
    (["cv", "--feature", "bogus=1"], "argument --feature: bogus: no such feature parameter"),
    (["sweep", "--param", "beta", "--values", "0.5", "--feature", "bogus=1"],
     "argument --feature: bogus: no such feature parameter"),
    (["tune", "--feature", "bogus=1"], "argument --feature: bogus: no such feature parameter"),
    (["quantize", "--mode", "scratch", "--feature", "bogus=1"], "argument --feature: bogus: no such feature parameter"),
    (["train", "--feature", "n_mfcc=abc"], "argument --feature: n_mfcc: expected int, got 'abc'"),
    (["train", "--feature", "top_db=loud"], "argument --feature: top_db: expected float, got 'loud'"),
    (["train", "--feature", "nokey"], "argument --feature: expected KEY=VALUE, got 'nokey'"),
    (["train", "--feature", "n_mfcc=0"], "FeatureConfig.n_mfcc must be positive, got 0"),
    # the same through the run config, by its key
    (["train", "data.feature_overrides.bogus=1"], "data.feature_overrides.bogus: no such feature parameter"),
    (["train", "data.feature_overrides.n_mfcc=abc"], "data.feature_overrides.n_mfcc: expected int, got 'abc'"),
    # --model-option and model.KEY=VALUE: the family's fields, their types and the flags' ranges
    (["train", "--model", "ssm_small", "--model-option", "features=abc"],
     "--model-option features: expected int, got 'abc'"),
    (["train", "--model", "ssm_small", "--model-option", "downsample=abc"],
     "--model-option downsample: expected a list of integers, got 'abc'"),
    (["train", "--model-option", "beta=1.5"], "--model-option beta must be >= 0 and <= 1; got 1.5"),
    (["train", "--model-option", "bogus=1"], "--model-option bogus: model 'model_b' has no option(s) ['bogus']"),
    (["train", "model.beta=abc"], "model.beta: expected float, got 'abc'"),
    (["train", "model.beta=1.5"], "model.beta must be >= 0 and <= 1; got 1.5"),
    (["train", "model.threshold=0"], "model.threshold must be > 0; got 0"),
    (["train", "model.surrogate=bogus"], "model.surrogate must be one of fast_sigmoid"),
    (["train", "model.name=123"], "unknown model '123': not a preset"),
    (["train", "--model", "ssm_small", "model.downsample=[1,0]"], "model.downsample: every value must be >= 1"),
    (["cv", "model.beta=abc"], "model.beta: expected float, got 'abc'"),
    (["tune", "--set", "model.beta=1.5"], "model.beta must be >= 0 and <= 1; got 1.5"),
    (["sweep", "--param", "beta", "--values", "0.5", "--set", "model.beta=abc"], "model.beta: expected float"),
    # sweep values: the parameter's type and range, before any data
    (["sweep", "--param", "beta", "--values", "abc"], "--values abc: model.beta: expected float, got 'abc'"),
    (["sweep", "--param", "beta", "--values", "0.5", "1.5"], "--values 1.5: model.beta must be >= 0 and <= 1"),
    (["sweep", "--param", "lr", "--values", "fast"], "--values fast: train.lr: expected float, got 'fast'"),
    (["sweep", "--param", "epochs", "--values", "0"], "--values 0: train.epochs must be >= 1; got 0"),
    (["sweep", "--param", "nonsense", "--values", "1"], "--param nonsense: no such option of model_b"),
    # an unparsable spec from scratch
    (["quantize", "--mode", "scratch", "--model", "6C3-XX-10FC"], "cannot parse layer 'XX'"),
    (["quantize", "--checkpoint", "{tmp}/text.pt"], "checkpoint {tmp}/text.pt cannot be loaded"),
    (["quantize", "--mode", "scratch", "data.feature_overrides.bogus=1"], "data.feature_overrides.bogus"),
    # files: one line naming the file and what is wrong
    (["train", "--config", "{tmp}/bad.yaml"], "config file {tmp}/bad.yaml cannot be parsed: "),
    (["train", "--config", "{tmp}/bad.yaml"], "at line 2, column 1"),
    (["evaluate", "--checkpoint", "{tmp}/text.pt"],
     "checkpoint {tmp}/text.pt cannot be loaded: not a file written by torch.save"),
    (["profile", "{tmp}/text.pt"], "checkpoint {tmp}/text.pt cannot be loaded: not a file written by torch.save"),
    (["adapt", "--checkpoint", "{tmp}/text.pt"], "checkpoint {tmp}/text.pt cannot be loaded"),
    (["neurobench", "{tmp}/text.pt"], "checkpoint {tmp}/text.pt cannot be loaded"),
    (["export-nir", "{tmp}/text.pt", "{tmp}/x.nir"], "checkpoint {tmp}/text.pt cannot be loaded"),
    (["compare", "{tmp}/fakerun"], "checkpoint {tmp}/fakerun/best.pt cannot be loaded"),
    # evaluate --snr: checked always; without --noise an error naming both
    (["evaluate", "--checkpoint", "missing.pt", "--snr", "abc"], "argument --snr: expected comma-separated numbers"),
    (["evaluate", "--checkpoint", "missing.pt", "--noise", "white", "--snr", "abc"],
     "argument --snr: expected comma-separated numbers"),
    (["evaluate", "--checkpoint", "missing.pt", "--snr", "5"], "--snr applies only with --noise KINDS"),
    (["evaluate", "--checkpoint", "missing.pt", "--noise-on", "val"], "--noise-on applies only with --noise KINDS"),
    (["evaluate", "--checkpoint", "missing.pt", "--warp-step", "0.05"],
     "--warp-step applies only with --warp-average SPREAD"),
]


@pytest.fixture
def bad_files(tmp_path, monkeypatch):
    """An empty data folder (no download), an unparsable YAML, a text file named .pt, a run folder holding one."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("SCNN_DATA_DIR", str(empty))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(NOT_A_CHECKPOINT)
    (tmp_path / "text.pt").write_text(NOT_A_CHECKPOINT)
    (tmp_path / "fakerun").mkdir()
    (tmp_path / "fakerun" / "best.pt").write_text(NOT_A_CHECKPOINT)
    return tmp_path


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_argument_is_one_line_naming_it(argv, message, bad_files, capsys):
    argv = [word.replace("{tmp}", str(bad_files)) for word in argv]
    with pytest.raises(SystemExit) as stopped:
        scnn([*argv, "--out", str(bad_files / "out")] if argv[0] not in ("export-nir",) else argv)
    error = capsys.readouterr().err
    assert stopped.value.code == 2, error
    assert "Traceback" not in error, error
    lines = error.strip().splitlines()
    assert len(lines) == 1, error
    assert lines[0].startswith(f"scnn {argv[0]}: error: "), lines[0]
    assert message.replace("{tmp}", str(bad_files)) in lines[0], lines[0]
    assert not (bad_files / "out").exists(), "checked before any output (or data) was written"


def test_a_multi_line_user_error_from_deep_code_is_one_line(monkeypatch, capsys):
    """A third party's text carried in a user error (torch.load's four lines) keeps its first line."""
    import importlib

    def deep(args):
        raise ValueError("checkpoint x.pt cannot be loaded (UnpicklingError: Weights only load failed.\n\nmore\nmore")

    monkeypatch.setattr(importlib.import_module("scnn.cli.profile"), "run", deep)
    with pytest.raises(SystemExit) as stopped:
        scnn(["profile", "x.pt"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.count("\n") == 1, error
    assert "checkpoint x.pt cannot be loaded" in error and "--debug" in error, error


def test_model_options_are_checked_without_building_a_model():
    from scnn.train.run_config import check_model_options

    check_model_options({"name": "model_b", "beta": 1, "num_steps": 5, "surrogate": "atan"})  # an int for a float
    check_model_options({"name": "ssm_small", "features": 32, "downsample": [1, 2]})
    with pytest.raises(ValueError, match=r"^model.state_size must be >= 1; got 0$"):
        check_model_options({"name": "ssm_small", "state_size": 0})
    with pytest.raises(ValueError, match=r"^model.learn_beta: expected bool, got 'yes'$"):
        check_model_options({"name": "model_b", "learn_beta": "yes"})
    with pytest.raises(ValueError, match=r"^model.name: give a preset .*; got 123$"):  # YAML read 123 as an int
        check_model_options({"name": 123})


def test_feature_config_refuses_unknown_names_and_types_as_value_errors():
    from scnn.features.mfcc import feature_config

    assert feature_config("default", top_db=20).top_db == 20
    with pytest.raises(ValueError, match=r"^feature bogus: no such feature parameter; valid: sample_rate"):
        feature_config("default", bogus=1)
    with pytest.raises(ValueError, match=r"^feature n_mfcc: expected int, got 'abc'$"):
        feature_config("default", n_mfcc="abc")


def test_sweep_values_are_checked_before_any_data(tmp_path):
    from scnn.data.prepare import DataConfig
    from scnn.search.sweep import run_sweep
    from scnn.train.config import TrainConfig

    data = DataConfig(data_dir=str(tmp_path / "absent"), download=False)
    with pytest.raises(ValueError, match=r"^sweep value abc: model.beta: expected float, got 'abc'$"):
        run_sweep("beta", [0.5, "abc"], [0], TrainConfig(), data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- every script, in a process of its own


def script_environment(tmp_path: Path, **extra) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("SCNN_DATA_DIR", "XDG_CACHE_HOME", "NO_PROXY", "no_proxy")}
    env.update(HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    return env


SCRIPTS = [
    ("experiments/train.py", ["--feature", "bogus=1"], "scnn train: error: argument --feature: bogus"),
    ("experiments/evaluate.py", ["--checkpoint", "text.pt", "--snr", "5"], "--snr applies only with --noise"),
    ("experiments/quantize.py", ["--mode", "scratch", "--feature", "n_mfcc=abc"],
     "argument --feature: n_mfcc: expected int, got 'abc'"),
    ("experiments/profile_cost.py", ["text.pt"], "checkpoint text.pt cannot be loaded: not a file written by torch"),
    ("experiments/compare.py", ["fakerun"], "checkpoint fakerun/best.pt cannot be loaded"),
    ("experiments/plot.py", ["--sample", "-1", "--run", "x"], "argument --sample: must be >= 0, got -1"),
    ("experiments/sweep_param.py", ["--param", "beta", "--values", "abc"], "--values abc: model.beta: expected float"),
    ("sweeps/tune_neuron.py", ["--feature", "bogus=1"], "scnn tune: error: argument --feature: bogus"),
]


@pytest.mark.parametrize("script, argv, message", SCRIPTS, ids=[s for s, _, _ in SCRIPTS])
def test_every_script_ends_a_bad_argument_in_one_line(script, argv, message, tmp_path):
    (tmp_path / "no-data").mkdir()
    (tmp_path / "text.pt").write_text(NOT_A_CHECKPOINT)
    (tmp_path / "fakerun").mkdir()
    (tmp_path / "fakerun" / "best.pt").write_text(NOT_A_CHECKPOINT)
    result = subprocess.run([sys.executable, str(REPO / script), *argv, "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env=script_environment(tmp_path, SCNN_DATA_DIR=str(tmp_path / "no-data")))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- issue item 3: no data, no network


def test_the_command_without_data_or_network_says_what_failed_and_both_ways_out(tmp_path):
    """`python -m scnn train` with no data anywhere and every download sent to a local address where nothing
    listens (the discard port, through the proxy variables requests reads): one line, exit 2."""
    unreachable = "http://127.0.0.1:9"
    env = script_environment(tmp_path, HTTPS_PROXY=unreachable, HTTP_PROXY=unreachable, https_proxy=unreachable,
                             http_proxy=unreachable, ALL_PROXY=unreachable, all_proxy=unreachable)
    result = subprocess.run([sys.executable, "-m", "scnn", "train", "--epochs", "1", "--no-progress",
                             "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scnn train: error: cannot download FSDD"), lines[0]
    assert "--data-dir DIR" in lines[0] and "SCNN_DATA_DIR=DIR" in lines[0], lines[0]
    assert not (tmp_path / "home" / ".cache" / "scnn" / "fsdd" / "recordings").exists(), "nothing half-downloaded"

