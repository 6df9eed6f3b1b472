"""The `scnn` command: every user error ends in one line naming the option and a non-zero exit,
with no traceback; the scripts in experiments/ and sweeps/ are the same command."""

import json
import shutil
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
    (["quantize", "--checkpoint", "x.pt", "quantize.epcohs=3"], "quantize.epcohs: no such option"),
    (["quantize", "--checkpoint", "x.pt", "data.splt=speaker"], "data.splt: no such option"),
    (["quantize", "--checkpoint", "x.pt", "quant.weight_bits=9"], "weight_bits must be an integer from 2 to 8, got 9"),
    (["quantize", "--config", str(REPO / "configs" / "fsdd_model_b.yaml")],
     "section 'train' does not apply to scnn quantize"),
    (["quantize", "--config", "missing.yaml"], "config file missing.yaml does not exist"),
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


SCRIPT_FOLDERS = ("experiments", "sweeps", "benchmarks")
# The one folder a script may put on sys.path: the repository root, so that `scnn` imports from a checkout.
REPO_ROOT_EXPRESSIONS = {"str(Path(__file__).resolve().parents[1])", "Path(__file__).resolve().parents[1]"}


def script_import_problems(source: str, script_names: set[str]) -> list[str]:
    """What in a script's source imports another script: an import (absolute or relative) of a script module
    or script folder, a module loaded by name or from a file (importlib, __import__, runpy.run_module), and any
    change of sys.path (or site.addsitedir) other than putting the repository root first."""
    import ast

    tree = ast.parse(source)
    assigned = {}  # module-level NAME = expression, to see through REPO = Path(__file__).resolve().parents[1]
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value

    def resolved(expression: ast.AST) -> str:
        class Substitute(ast.NodeTransformer):
            def visit_Name(self, name):
                return assigned.get(name.id, name)

        return ast.unparse(Substitute().visit(ast.parse(ast.unparse(expression), mode="eval")).body)

    def dotted(expression: ast.AST) -> str:
        return ast.unparse(expression) if isinstance(expression, (ast.Attribute, ast.Name)) else ""

    problems = []
    for node in sorted((node for node in ast.walk(tree) if hasattr(node, "lineno")),
                       key=lambda node: (node.lineno, node.col_offset)):
        line = f"line {node.lineno}"
        if isinstance(node, ast.Import):
            problems += [f"{line}: import {alias.name}" for alias in node.names
                         if alias.name.split(".")[0] in script_names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                problems.append(f"{line}: relative import from {'.' * node.level}{node.module or ''}")
            elif (node.module or "").split(".")[0] in script_names:
                problems.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            function = dotted(node.func)
            first = node.args[0] if node.args else None
            name = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            if function in ("importlib.import_module", "import_module", "__import__", "runpy.run_module") and \
                    name is not None and name.split(".")[0].lstrip(".") in script_names:
                problems.append(f"{line}: {function}({name!r})")
            if function.endswith(("spec_from_file_location", "SourceFileLoader", "addsitedir")):
                problems.append(f"{line}: {function}(...)")
            if function.startswith("sys.path."):
                paths = node.args[1:] if function == "sys.path.insert" else node.args
                bad = [resolved(arg) for arg in paths if resolved(arg) not in REPO_ROOT_EXPRESSIONS]
                if bad or function not in ("sys.path.insert", "sys.path.append"):
                    problems.append(f"{line}: {function}({', '.join(map(ast.unparse, node.args))}) puts "
                                    f"{' and '.join(bad) or 'something'} on sys.path (only the repository root may go there)")
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                text = ast.unparse(target)
                if text == "sys.path" or text.startswith("sys.path["):
                    problems.append(f"{line}: assigns {text}")
    return problems


def test_no_script_imports_another_script():
    """Scripts call the package; none reaches into another script, by import, by loading it from a file, or by
    putting a script folder on sys.path (benchmarks/bench_neurons.py once did all of this to borrow two timing
    helpers from bench_engine.py; they live in scnn.timing now)."""
    scripts = [path for folder in SCRIPT_FOLDERS for path in sorted((REPO / folder).glob("*.py"))]
    names = set(SCRIPT_FOLDERS) | {path.stem for path in scripts}
    assert len(scripts) > 15 and {"bench_engine", "train", "tune_neuron"} <= names
    found = {str(path.relative_to(REPO)): problems for path in scripts
             if (problems := script_import_problems(path.read_text(), names))}
    assert not found, found
    # The check itself catches what it is for: the first version of bench_neurons.py, and the other ways.
    old_bench_neurons = (
        "import sys\nfrom pathlib import Path\n"
        "sys.path.insert(0, str(Path(__file__).resolve().parents[1]))\n"
        "sys.path.insert(0, str(Path(__file__).resolve().parent))\n"
        "from bench_engine import interleaved, median_ratio  # noqa: E402\n"
        "from scnn.models import create_model  # noqa: E402\n")
    problems = script_import_problems(old_bench_neurons, names)
    assert len(problems) == 2 and "line 4: sys.path.insert" in problems[0] and ".parent)" in problems[0], problems
    assert problems[1] == "line 5: from bench_engine import ...", problems
    for sneaky in ["import bench_engine", "import benchmarks.bench_engine", "from . import bench_engine",
                   "from experiments.train import main", "importlib.import_module('bench_engine')",
                   "sys.path.append(os.path.dirname(__file__))", "sys.path[:0] = [HERE]",
                   "HERE = Path(__file__).parent\nsys.path.insert(0, str(HERE))",
                   "spec = importlib.util.spec_from_file_location('x', 'bench_engine.py')",
                   "site.addsitedir('benchmarks')"]:
        assert script_import_problems(sneaky, names), sneaky
    for fine in ["REPO = Path(__file__).resolve().parents[1]\nsys.path.insert(0, str(REPO))",
                 "from scnn import faults", "import statistics", "from scnn.timing import interleaved"]:
        assert not script_import_problems(fine, names), fine


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


# --------------------------------------------------------------------------- scnn quantize reads a config as train does


def test_quantize_config_loads_and_layers_as_in_train(tmp_path):
    """configs/quantize/ holds the README quantisation table's settings; the file, then the flags, then KEY=VALUE
    overrides, each over the one before, as scnn train layers its run config."""
    from scnn.quant.workflow import QuantRunConfig, load_quantize_config

    shipped = sorted((REPO / "configs" / "quantize").glob("*.yaml"))
    assert shipped and all(isinstance(load_quantize_config(path), QuantRunConfig) for path in shipped)
    table = REPO / "configs" / "quantize" / "fsdd_model_b_int8.yaml"
    config = load_quantize_config(table)
    # The README's table: PTQ on 512 training samples, then 5 QAT epochs; INT8 weights, input and membrane.
    assert (config.checkpoint, config.mode, config.epochs, config.lr, config.calibration_samples) == (
        "runs/float/model_b_t10/best.pt", "qat", 5, 5e-4, 512)
    assert (config.quant.weight_bits, config.quant.act_bits, config.quant.state_bits, config.quant.leak) == (
        8, 8, 8, "shift")

    tree = scnn(["quantize", "--config", str(table), "--print-config"])
    assert tree["quantize"]["epochs"] == 5 and tree["quant"]["weight_bits"] == 8
    tree = scnn(["quantize", "--config", str(table), "--epochs", "2", "--weight-bits", "4", "quantize.epochs=3",
                 "quant.state_bits=6", "--data-dir", "elsewhere", "--print-config"])
    assert tree["quantize"]["epochs"] == 3, "an override beats the flag, the flag the file"
    assert (tree["quant"]["weight_bits"], tree["quant"]["state_bits"]) == (4, 6)
    assert tree["quantize"]["calibration_samples"] == 512 and tree["quantize"]["threads"] == 2, "the file's, kept"
    assert tree["data"] == {"data_dir": "elsewhere"}, "data options change the checkpoint's data config"
    trained = scnn(["train", "--config", str(REPO / "configs" / "fsdd_model_b.yaml"), "--epochs", "2",
                    "train.epochs=3", "--print-config"])
    assert trained["train"]["epochs"] == 3, "the same precedence as scnn train"
    assert scnn(["quantize", "--checkpoint", "x.pt", "--print-config"])["quantize"]["epochs"] == 5, "the defaults"

    scratch = tmp_path / "scratch.toml"
    scratch.write_text('[quantize]\nmode = "scratch"\nepochs = 20\n[model]\nname = "4C3-16FC-3FC"\nnum_steps = 2\n'
                       '[data]\ndataset = "folders"\nsplit = "random"\n')
    tree = scnn(["quantize", "--config", str(scratch), "--num-steps", "3", "--split", "speaker", "--print-config"])
    assert tree["model"] == {"name": "4C3-16FC-3FC", "num_steps": 3}
    assert tree["data"] == {"dataset": "folders", "split": "speaker"} and tree["quantize"]["mode"] == "scratch"


def test_python_requires_matches_the_standard_library_used():
    """TOML configs are read with tomllib (Python 3.11+, no fallback): setup.cfg must not promise 3.10."""
    import configparser

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert any("tomllib" in path.read_text() for path in (REPO / "scnn").rglob("*.py"))
    assert setup["options"]["python_requires"].strip() == ">=3.11"


# --------------------------------------------------------------------------- run_config in every results file


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory) -> Path:
    """A one-epoch run of a small spiking net on tones in class folders (no FSDD needed): ROOT/run/best.pt."""
    from scnn.data.fixtures import write_tone
    from scnn.train import DataConfig, TrainConfig, train

    root = tmp_path_factory.mktemp("tones")
    for label, frequency in (("low", 300.0), ("mid", 700.0), ("high", 1500.0)):
        for take in range(10):
            write_tone(root / "wav" / label / f"{take}.wav", frequency * (1 + 0.02 * take), seed=take, seconds=0.4)
    data = DataConfig(data_dir=str(root / "wav"), dataset="folders", split="random", test_fraction=0.3,
                      val_fraction=0.2, cache_dir=str(root / "cache"), download=False)
    train(TrainConfig(model="4C3-16FC-3FC", model_overrides={"num_steps": 2}, epochs=1, batch_size=8, threads=1),
          data, root / "run", progress=False)
    return root


def test_evaluate_quantize_and_adapt_results_carry_the_run_config(tone_run, tmp_path):
    """train's results.json has run_config; evaluate's, quantize's results.json and adapt.json have it too, in the
    same layout (RunConfig.from_dict rebuilds it), with the data as each read it."""
    from scnn.train import RunConfig
    from scnn.train.adapt import self_train

    best = tone_run / "run" / "best.pt"
    trained = json.loads((tone_run / "run" / "results.json").read_text())["run_config"]
    moved = tmp_path / "moved"
    shutil.copytree(tone_run / "wav", moved)
    moved_data = {**trained["data"], "data_dir": str(moved)}

    scnn(["evaluate", "--checkpoint", str(best), "--data-dir", str(moved), "--out", str(tmp_path / "eval"),
          "--no-progress"])
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert evaluated["run_config"] == {**trained, "data": moved_data}
    assert RunConfig.from_dict(evaluated["run_config"]).to_dict() == evaluated["run_config"]

    scnn(["quantize", "--checkpoint", str(best), "--mode", "ptq", "--no-export", "--threads", "1", "--no-progress",
          "--calibration-samples", "8", "--data-dir", str(moved), "--out", str(tmp_path / "ptq")])
    quantized = json.loads((tmp_path / "ptq" / "results.json").read_text())
    assert quantized["run_config"] == {**trained, "data": moved_data}, "the float model's run config"
    assert quantized["config"]["data"] == {"data_dir": str(moved)}

    self_train(best, tmp_path / "adapt", part="val", keep=1.0, epochs=1, warp_spread=0.0, device="cpu")
    adapted = json.loads((tmp_path / "adapt" / "adapt.json").read_text())["run_config"]
    assert adapted["model"] == trained["model"] and adapted["data"] == trained["data"]
    assert adapted["train"] == {**trained["train"], "epochs": 1, "lr": trained["train"]["lr"] * 0.3, "patience": 0}

