"""Tables of accuracy against cost, from checkpoints: the profile table and the paper comparison."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from scnn.data.prepare import checkpoint_data
from scnn.io import write_json, write_text
from scnn.metrics import profile_model
from scnn.train.config import resolve_device
from scnn.train.evaluate import evaluate, load_trained_model

# The ISCAS 2023 paper's FSDD numbers (random split), where it reports them.
PAPER_RESULTS = {
    ("model_a", 10): {"paper_accuracy": 0.987, "paper_int8_accuracy": 0.741},
    ("model_b", 10): {"paper_accuracy": 0.984, "paper_int8_accuracy": 0.970},
    ("model_a", 1): {"paper_flops": 28.085e6},
}

COLUMNS = ["run", "architecture", "T", "accuracy", "quantized_accuracy", "parameters", "dense_macs",
           "dense_macs_per_step", "effective_macs", "effective_acs", "activation_sparsity", "footprint_float32_bytes",
           "footprint_int8_bytes", "energy_float32_nj", "energy_int8_nj", "dense_energy_float32_nj"]


def quantized_accuracy(quant_dir: str | Path | None) -> float | None:
    """Test accuracy of ``experiments/quantize.py``'s run in ``quant_dir`` (None if there is none)."""
    results_file = Path(quant_dir) / "results.json" if quant_dir else None
    if results_file is None or not results_file.exists():
        return None
    return json.loads(results_file.read_text())["quantized"]["test_accuracy"]


def profile_checkpoint(path: str | Path, data_dir: str | None = None, max_samples: int | None = None,
                       device: str = "auto", quant_dir: str | Path | None = None) -> dict:
    """One table row for a checkpoint: accuracy (its results.json, else computed) and per-sample costs.

    The quantised accuracy comes from ``quant_dir`` (a quantize.py output), else from the
    run's ``int8/`` folder, where ``scripts/main.sh`` puts it.
    """
    path = Path(path)
    model, checkpoint = load_trained_model(path, resolve_device(device))
    data = checkpoint_data(checkpoint, {"data_dir": data_dir})
    test_x, test_y = data.test
    results_file = path.parent / "results.json"
    stored = json.loads(results_file.read_text()) if results_file.exists() else {}
    accuracy = stored.get("test_accuracy")
    if accuracy is None:
        accuracy = evaluate(model, test_x, test_y, num_classes=len(data.class_names))["accuracy"]
    samples = test_x[:max_samples] if max_samples else test_x
    profile = profile_model(model, samples)
    config = checkpoint["model"]["config"]
    return {
        "run": str(path.parent),
        "architecture": checkpoint["train_config"]["model"] + (f" ({config['spec']})" if "spec" in config else
                                                              f" (SSM, H={config.get('features')}, P={config.get('state_size')})"),
        "model": checkpoint["train_config"]["model"],
        "T": profile.num_steps,
        "accuracy": accuracy,
        "quantized_accuracy": quantized_accuracy(quant_dir or path.parent / "int8"),
        "parameters": profile.parameters,
        "dense_macs": profile.dense_macs["as_executed"],
        "dense_macs_per_step": profile.dense_macs["per_step"],
        "effective_macs": profile.synaptic_operations["effective_macs"],
        "effective_acs": profile.synaptic_operations["effective_acs"],
        "activation_sparsity": profile.activation_sparsity["overall"],
        "footprint_float32_bytes": profile.footprint_bytes["float32"],
        "footprint_int8_bytes": profile.footprint_bytes["int8"],
        "energy_float32_nj": profile.energy_float32["synaptic_pj"] / 1000,
        "energy_int8_nj": profile.energy_int8["synaptic_pj"] / 1000,
        "dense_energy_float32_nj": profile.energy_float32["dense_pj"] / 1000,
        "profile": profile.to_dict(),
    }


def _format(value, column: str) -> str:
    if value is None:
        return ""
    if column in ("accuracy", "val_accuracy", "quantized_accuracy", "activation_sparsity", "paper_accuracy",
                  "paper_int8_accuracy"):
        return f"{100 * value:.2f} %"
    if column in ("dense_macs", "dense_macs_per_step", "effective_macs", "effective_acs", "paper_flops", "synops"):
        return f"{value / 1e6:.3f} M"
    if column in ("beta", "threshold"):
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(column), column) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def with_paper_values(rows: list[dict]) -> list[dict]:
    """Add the paper's reported numbers to the matching rows (model name and T)."""
    return [{**row, **PAPER_RESULTS.get((row["model"], row["T"]), {})} for row in rows]


def write_rows(rows: list[dict], out: str | Path, name: str, columns: list[str]) -> str:
    """Save rows as OUT/NAME.csv (the columns), .json (everything) and .md; returns the Markdown table."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(f"{out}/{name}.csv", buffer.getvalue())
    write_json(f"{out}/{name}.json", rows)
    table = markdown_table(rows, columns)
    write_text(f"{out}/{name}.md", table)
    return table


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a table written by :func:`write_rows` (its .csv or .json); CSV numbers parsed, blanks None."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}: run experiments/compare.py or profile_cost.py first")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with path.open() as handle:
        return [{key: _parse(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _parse(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
