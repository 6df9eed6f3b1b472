"""The `scnn` command: every user error ends in one line naming the option and a non-zero exit,
with no traceback; the scripts in experiments/ and sweeps/ are the same command."""

import subprocess
import sys
from pathlib import Path

import pytest

from scnn.cli import COMMANDS, main as scnn

REPO = Path(__file__).resolve().parents[1]

BAD_ARGUMENTS = [
    (["train", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["train", "--epochs", "-3"], "argument --epochs: must be >= 1, got -3"),
    (["train", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["train", "--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (["train", "--beta", "1.5"], "argument --beta: must lie in [0, 1], got 1.5"),
    (["train", "--split", "diagonal"], "argument --split: invalid choice: 'diagonal'"),
    (["train", "--model", "6C3-XX-10FC"], "cannot parse layer 'XX'"),
    (["train", "--model", "model_b", "--model-option", "bogus=1"], "has no option(s) ['bogus']"),
    (["train", "train.epochs=0"], "train.epochs must be >= 1; got 0"),
    (["train", "train.epcohs=3"], "train.epcohs: no such option"),
    (["train", "--config", "missing.yaml"], "config file missing.yaml does not exist"),
    (["evaluate"], "the following arguments are required: --checkpoint"),
    (["evaluate", "--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
    (["adapt", "--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
    (["adapt", "--checkpoint", "a.pt", "--keep", "1.5"], "argument --keep: must be <= 1.0, got 1.5"),
    (["adapt", "--checkpoint", "a.pt", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["adapt", "--checkpoint", "a.pt", "--warp-average", "0.4"], "--warp-average must be in (0, 0.3], got 0.4"),
    (["adapt", "--checkpoint", "a.pt", "--rounds", "0"], "argument --rounds: must be >= 1, got 0"),
    (["quantize", "--checkpoint", "x.pt", "--weight-bits", "1"], "argument --weight-bits: must be from 2 to 8, got 1"),
    (["quantize", "--mode", "qat"], "mode 'qat' needs a float checkpoint (--checkpoint)"),
    (["quantize", "--mode", "scratch", "--epochs", "-1"], "argument --epochs: must be >= 0, got -1"),
    (["profile", "missing.pt"], "checkpoint missing.pt does not exist"),
    (["profile", "x.pt", "--max-samples", "0"], "argument --max-samples: must be >= 1, got 0"),
    (["compare", "runs/a", "--quantized", "nonsense"], "--quantized takes RUN=QUANT_DIR"),
    (["sweep", "--param", "beta", "--values", "0.5", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["sweep", "--param", "beta", "--values", "0.5", "--model", "6C3-XX"], "cannot parse layer 'XX'"),
    (["sweep", "--param", "beta", "--values", "0.5", "--seeds", "x"], "argument --seeds: expected an integer"),
    (["cv", "--folds", "0"], "argument --folds: must be >= 1, got 0"),
    (["cv", "--extend-epochs"], "--extend-epochs does not apply to scnn cv"),
    (["cv", "data.num_val_speakers=-1"], "data.num_val_speakers must be >= 0; got -1"),
    (["tune", "--num-samples", "0"], "argument --num-samples: must be >= 1, got 0"),
    (["tune", "--search", "grid"], "argument --search: invalid choice: 'grid'"),
    (["plot"], "nothing to plot"),
    (["plot", "--sample", "-1", "--run", "x"], "argument --sample: must be >= 0, got -1"),
    (["stream", "x.wav"], "the following arguments are required: --checkpoint"),
    (["stream", "missing.wav", "--checkpoint", "x.pt"], "audio file missing.wav does not exist"),
    (["stream", "x.wav", "--checkpoint", "x.pt", "--chunk-ms", "0"], "argument --chunk-ms: must be > 0.0, got 0"),
    (["export-c", "missing/integer", "--out", "c"], "missing/integer.json: no integer artefact"),
    (["export-c", "missing/integer"], "the following arguments are required: --out"),
    (["export-nir", "missing.pt", "out.nir"], "checkpoint missing.pt does not exist"),
    (["neurobench", "missing.pt"], "checkpoint missing.pt does not exist"),
    (["neurobench", "x.pt", "--max-samples", "0"], "argument --max-samples: must be >= 1, got 0"),
    (["fly"], "invalid choice: 'fly'"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_end_in_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths (missing.pt, runs/a) resolve in an empty folder
    with pytest.raises(SystemExit) as stopped:
        scnn(argv)
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert message in error, error
    lines = error.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in error, error
    if argv[0] in COMMANDS:
        assert lines[0].startswith(f"scnn {argv[0]}: error: "), lines[0]


def test_every_subcommand_is_in_the_table():
    assert {argv[0] for argv, _ in BAD_ARGUMENTS} >= set(COMMANDS)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        scnn(["evaluate", "--checkpoint", "missing.pt", "--debug"])


def test_download_failure_is_one_line_with_the_ways_out(tmp_path, monkeypatch, capsys):
    """No data and no network: one line saying what failed and where to point the toolkit."""
    monkeypatch.delenv("SCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def unreachable(*args, **kwargs):
        import requests

        raise requests.ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr("requests.get", unreachable)  # the transport of scnn.data.download
    with pytest.raises(SystemExit) as stopped:
        scnn(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and len(error.strip().splitlines()) == 1, error
    assert "cannot download FSDD" in error and "--data-dir" in error and "SCNN_DATA_DIR" in error, error


@pytest.mark.parametrize("script, argv, message", [
    ("experiments/train.py", ["--epochs", "0"], "scnn train: error: argument --epochs: must be >= 1, got 0"),
    ("experiments/evaluate.py", ["--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
    ("sweeps/tune_neuron.py", ["--num-samples", "0"], "argument --num-samples: must be >= 1, got 0"),
])
def test_scripts_are_the_command(script, argv, message, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / script), *argv], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_no_script_imports_another_script():
    import ast

    scripts = ("experiments", "sweeps", "benchmarks")
    for folder in scripts:
        for path in (REPO / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not any(name.split(".")[0] in scripts for name in names), (path, names)


def test_print_config_shows_the_layers(capsys):
    config = scnn(["train", "--config", str(REPO / "configs" / "fsdd_model_b.yaml"), "--beta", "0.7",
                   "train.epochs=40", "--print-config"])
    assert config["model"]["beta"] == 0.7 and config["train"]["epochs"] == 40
    assert "beta: 0.7" in capsys.readouterr().out


def test_the_installed_command_exits_0_after_a_run(tmp_path):
    """The console script's return value is its exit status: a results dict would print and exit 1."""
    import configparser

    entry = configparser.ConfigParser()
    entry.read(REPO / "setup.cfg")
    assert "scnn = scnn.cli:console_main" in entry["options.entry_points"]["console_scripts"]
    code = f"import sys; from scnn.cli import console_main; sys.argv = ['scnn', 'train', '--print-config']; " \
           f"sys.exit(console_main())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "name: model_b" in result.stdout and result.stderr == "", result.stderr
