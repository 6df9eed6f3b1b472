"""Table rows from checkpoints and result folders: the profile table, the paper comparison, quantisation runs.

The tables themselves (columns, files, reading and writing) are :mod:`scnn.result_tables`.
"""

from __future__ import annotations

import json
from pathlib import Path

from scnn.data.prepare import checkpoint_data
from scnn.io import write_text
from scnn.metrics import profile_model
from scnn.result_tables import TABLES, format_value, read_table, write_table
from scnn.result_tables import markdown_table as result_markdown
from scnn.train.config import resolve_device
from scnn.train.evaluate import evaluate, load_trained_model

# The ISCAS 2023 paper's FSDD numbers (random split), where it reports them.
PAPER_RESULTS = {
    ("model_a", 10): {"paper_accuracy": 0.987, "paper_int8_accuracy": 0.741},
    ("model_b", 10): {"paper_accuracy": 0.984, "paper_int8_accuracy": 0.970},
    ("model_a", 1): {"paper_flops": 28.085e6},
}

# The columns experiments/profile_cost.py shows in profile.md (profile.csv holds every column of the table).
COLUMNS = ["run", "architecture", "num_steps", "accuracy", "quantized_accuracy", "parameters", "dense_macs",
           "dense_macs_per_step", "effective_macs", "effective_acs", "activation_sparsity", "footprint_float32_bytes",
           "footprint_int8_bytes", "energy_float32_nj", "energy_int8_nj", "dense_energy_float32_nj"]
# Markdown headers: the paper's notation where it has one.
LABELS = {"num_steps": "T"}


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
        "model": checkpoint["train_config"]["model"],
        "architecture": checkpoint["train_config"]["model"] + (f" ({config['spec']})" if "spec" in config else
                                                              f" (SSM, H={config.get('features')}, P={config.get('state_size')})"),
        "accuracy": accuracy,
        "quantized_accuracy": quantized_accuracy(quant_dir or path.parent / "int8"),
        **profile.row(),
    }


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of any rows (e.g. search trials), for people only: a column that some results table
    defines is formatted by its unit (fractions as percentages, operations in millions)."""
    known = {column.name: column for table in TABLES.values() for column in table.columns}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(name), known.get(name)) for name in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def with_paper_values(rows: list[dict]) -> list[dict]:
    """Add the paper's reported numbers to the matching rows (model name and T)."""
    return [{**row, **PAPER_RESULTS.get((row["model"], row["num_steps"]), {})} for row in rows]


def write_rows(rows: list[dict], out: str | Path, name: str, columns: list[str]) -> str:
    """Save rows as table ``name`` ("profile" or "compare", :mod:`scnn.result_tables`): OUT/NAME.csv and its
    sidecar OUT/NAME.json hold every column; OUT/NAME.md, for people, shows ``columns`` (a column may be
    given by its Markdown label, e.g. "T" for num_steps). Returns the Markdown table."""
    by_label = {label: column for column, label in LABELS.items()}
    columns = [by_label.get(column, column) for column in columns]
    write_table(rows, Path(out) / f"{name}.csv", name)
    table = result_markdown(rows, name, columns, LABELS)
    write_text(Path(out) / f"{name}.md", table)
    return table


def quantization_row(results: dict, model: str, run: str) -> dict:
    """One row of the "quantization" table from an ``experiments/quantize.py`` results.json.

    model: the name the row goes by; run: the result folder (relative to the table's folder, or absolute).
    """
    config, reference = results["config"], results.get("integer_reference", {})
    bits = config.get("quant", config)  # the first version kept the QuantConfig fields at the top level
    trained = config["mode"] in ("qat", "scratch")
    return {
        "model": model, "run": str(run), "checkpoint": config.get("checkpoint"), "mode": config["mode"],
        "weight_bits": bits["weight_bits"], "act_bits": bits["act_bits"], "state_bits": bits["state_bits"],
        "per_channel": bits["per_channel"], "float_accuracy": results["float"].get("test_accuracy"),
        "ptq_accuracy": results.get("ptq_test_accuracy"),
        "qat_accuracy": results["quantized"]["test_accuracy"] if trained else None,
        "float_bytes": results["float"].get("size_bytes"), "quantized_bytes": results["quantized"]["size_bytes"],
        "integer_prediction_agreement": reference.get("prediction_agreement"),
        "integer_spike_count_agreement": reference.get("spike_count_agreement"),
        "integer_logit_agreement": reference.get("logit_agreement"), "integer_samples": reference.get("samples"),
        "onnx_prediction_agreement": results.get("onnx", {}).get("prediction_agreement"),
        "qonnx_prediction_agreement": results.get("qonnx", {}).get("prediction_agreement"),
        "wall_time_s": results.get("wall_time_s"),
    }


def read_cost_table(path: str | Path) -> list[dict]:
    """Rows of a "compare" or "profile" table (its .csv or .json sidecar), checked against the schema."""
    return read_table(path, ("compare", "profile"))
