"""Shared fixtures: the real FSDD folder and a feature cache shared by the end-to-end tests."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_fsdd() -> Path | None:
    """$SCNN_DATA_DIR if set, else the shared copy beside the checkout."""
    candidates = [os.environ.get("SCNN_DATA_DIR"), REPO.parent / "shared" / "data" / "fsdd" / "recordings"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("*.wav")):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    folder = find_fsdd()
    if folder is None:
        pytest.skip("real FSDD recordings not found: set SCNN_DATA_DIR to the folder of wavs")
    return folder


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """One feature cache for the whole session, so the 3,000 files are extracted once."""
    return tmp_path_factory.mktemp("feature-cache")


# --------------------------------------------------------------------------- small inputs of the figures and notebooks
# Real FSDD, 3 training recordings per class, one epoch: the numbers are poor, but every file has the
# layout and the values that the full-size scripts write.


@pytest.fixture(scope="session")
def tiny_fsdd(fsdd_dir, feature_cache):
    """(DataConfig, PreparedData): 3 training recordings per class, the whole validation and test splits."""
    from scnn.train import DataConfig, prepare_data

    config = DataConfig(data_dir=str(fsdd_dir), cache_dir=str(feature_cache), train_per_class=3, download=False)
    return config, prepare_data(config, progress=False)


def _one_epoch_run(folder: Path, tiny_fsdd, model: str, **model_overrides) -> Path:
    from scnn.train import TrainConfig, train

    data_config, data = tiny_fsdd
    train(TrainConfig(model=model, epochs=1, batch_size=16, model_overrides=model_overrides), data_config, folder,
          progress=False, data=data)
    return folder


@pytest.fixture(scope="session")
def tiny_snn_run(tmp_path_factory, tiny_fsdd) -> Path:
    """A train.py-style run folder (best.pt, metrics.jsonl, results.json) of Model B, T = 4, one epoch."""
    return _one_epoch_run(tmp_path_factory.mktemp("runs") / "model_b", tiny_fsdd, "model_b", num_steps=4)


@pytest.fixture(scope="session")
def tiny_ssm_run(tmp_path_factory, tiny_fsdd) -> Path:
    """A run folder of the tiny SSM baseline, one epoch."""
    return _one_epoch_run(tmp_path_factory.mktemp("runs") / "ssm_tiny", tiny_fsdd, "ssm_tiny")


@pytest.fixture(scope="session")
def tiny_sweep_csv(tmp_path_factory, tiny_fsdd) -> Path:
    """sweep.csv of a beta sweep of Model B (T = 3): two values, two seeds, one epoch each."""
    from scnn.search.sweep import run_sweep
    from scnn.train import TrainConfig

    data_config, data = tiny_fsdd
    out = tmp_path_factory.mktemp("sweep_beta")
    base = TrainConfig(model="model_b", epochs=1, batch_size=16, model_overrides={"num_steps": 3})
    run_sweep("beta", [0.3, 0.8], [0, 1], base, data_config, out, data=data, progress=False)
    return out / "sweep.csv"


@pytest.fixture(scope="session")
def tiny_tune_results(tmp_path_factory, tiny_sweep_csv) -> Path:
    """A folder holding trials.json in sweeps/tune_neuron.py's format, one trial per run of the tiny sweep,
    plus one errored trial (no metrics). Starting Ray would cost more than the whole notebook test."""
    import json

    from scnn.search.sweep import read_sweep

    trials = [{"beta": row["value"], "threshold": 1.0, "num_steps": 3, "val_accuracy": row["val_accuracy"],
               "activation_sparsity": row["activation_sparsity"],
               "synops": row["effective_acs_per_sample"] + row["effective_macs_per_sample"], "epoch": 1, "error": ""}
              for row in read_sweep(tiny_sweep_csv)]
    trials.append({"beta": 0.5, "threshold": 2.0, "num_steps": 5, "val_accuracy": None, "activation_sparsity": None,
                   "synops": None, "epoch": None, "error": "RuntimeError('trial failed')"})
    folder = tmp_path_factory.mktemp("tune")
    (folder / "trials.json").write_text(json.dumps(trials, indent=1))
    return folder


@pytest.fixture(scope="session")
def tiny_compare_csv(tmp_path_factory, tiny_snn_run, tiny_ssm_run) -> Path:
    """compare.csv of experiments/compare.py over the tiny SNN and SSM runs (costs on 20 test recordings)."""
    from scnn.cli import main as scnn

    out = tmp_path_factory.mktemp("compare")
    scnn(["compare", str(tiny_snn_run), str(tiny_ssm_run), "--max-samples", "20", "--out", str(out)])
    return out / "compare.csv"


@pytest.fixture(scope="session")
def tiny_quant_results(tmp_path_factory, tiny_snn_run) -> Path:
    """A folder as benchmarks/quantization.py leaves it: experiments/quantize.py (PTQ, then one QAT epoch) of
    the tiny Model B at 8 and 4 weight bits in model_b_w8a8s8/ and model_b_w4a8s8/, and summary.csv over
    both (the benchmark reuses the finished runs)."""
    import subprocess
    import sys

    from scnn.cli import main as scnn

    out = tmp_path_factory.mktemp("quant")
    for bits in (8, 4):
        scnn(["quantize", "--checkpoint", str(tiny_snn_run / "best.pt"), "--mode", "qat", "--epochs", "1",
                       "--weight-bits", str(bits), "--threads", "1", "--no-progress",
                       "--out", str(out / f"model_b_w{bits}a8s8")])
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "quantization.py"), "--checkpoint",
                    f"model_b={tiny_snn_run / 'best.pt'}", "--bits", "8,8,8", "4,8,8", "--threads", "1",
                    "--out", str(out)], check=True, capture_output=True)
    return out
