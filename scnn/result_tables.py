"""Named result tables: their documented columns, one writer and one reader.

Benchmarks and table scripts save rows of plain data: a CSV (``NAME.csv``: one header line,
raw values, fractions as fractions, counts as plain integers, blank for "not measured") and a
JSON sidecar beside it (``NAME.json``) that names the table, its schema version, its columns
(type, unit, meaning) and where it came from (machine, arguments). Figures, notebooks and
tables read them back only through :func:`read_table`, which checks the sidecar, the header
and every value, and names the file, the line and the column of whatever is wrong. Markdown
tables (:func:`markdown_table`) are for people and are never read back.

Each table (:data:`TABLES`) lists its columns; ``docs/results_formats.md`` lists the same
(a test keeps the two in step). A new table is one :class:`Table` and one
:func:`register_table` call.

Cell encoding by column type:
    int      ``-?[0-9]+`` (no thousands separator)
    float    Python's ``repr`` of a finite float (round-trips exactly); no "%", no unit
    bool     ``true`` / ``false``
    str      the text (CSV-quoted where needed); never empty
    floats   a list of floats joined by ``;`` (e.g. spike density per layer)
    json     a JSON value (for the few nested settings, e.g. feature overrides)
A blank cell means "not measured" and is allowed only in columns marked optional. A column
whose unit is ``fraction`` holds values in [0, 1]: 0.9967, never 99.67.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from scnn.io import write_json, write_text

TYPES = ("int", "float", "bool", "str", "floats", "json")
_INT = re.compile(r"^-?[0-9]+$")
MAX_REPORTED_PROBLEMS = 20  # a file with more lists the first 20 and counts the rest


class TableError(ValueError):
    """A results table (or rows to be written as one) does not match its schema."""


@dataclass(frozen=True)
class Column:
    """One column: its name, type (one of :data:`TYPES`), unit and meaning.

    optional: blank cells (None) allowed, meaning "not measured" or "does not apply".
    """

    name: str
    type: str
    unit: str
    meaning: str
    optional: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"column {self.name!r}: type {self.type!r} is not one of {TYPES}")


@dataclass(frozen=True)
class Table:
    """A named table: its schema version, columns, the files it is saved as and the command that writes it.

    Bump ``version`` whenever a column is added, removed, renamed or changes type or unit: files of
    another version are refused with the command that rewrites them.
    """

    name: str
    version: int
    columns: tuple[Column, ...]
    files: str
    command: str
    about: str = ""
    based_on: str | None = None  # a table whose columns this one's start with (documented once, there)

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


@dataclass
class TableFile:
    """What :func:`load_table` read: the table's schema, its rows and the sidecar's metadata."""

    table: Table
    rows: list[dict]
    metadata: dict = field(default_factory=dict)
    path: Path | None = None


TABLES: dict[str, Table] = {}


def register_table(table: Table) -> Table:
    names = table.column_names
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"table {table.name!r} lists column(s) {duplicates} twice")
    TABLES[table.name] = table
    return table


def get_table(name: str) -> Table:
    if name not in TABLES:
        raise KeyError(f"unknown results table {name!r}; known: {sorted(TABLES)}")
    return TABLES[name]


# --------------------------------------------------------------------------- values


def _is_bool(value) -> bool:
    return type(value).__name__ in ("bool", "bool_")  # numpy's bool too, without importing numpy


def _check_value(value, column: Column):
    """The value as a plain Python value of the column's type, or raise ValueError saying why not."""
    if value is None:
        if not column.optional:
            raise ValueError("blank, but the column is required")
        return None
    kind = column.type
    if kind == "int":
        if _is_bool(value) or not hasattr(value, "__index__"):
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    if kind == "float":
        if _is_bool(value) or isinstance(value, str):
            raise ValueError(f"{value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{number} is not finite (leave the cell blank for 'not measured')")
        if column.unit == "fraction" and not 0.0 <= number <= 1.0:
            raise ValueError(f"{number} is outside [0, 1]: a fraction, not a percentage")
        return number
    if kind == "bool":
        if not _is_bool(value):
            raise ValueError(f"{value!r} is not true or false")
        return bool(value)
    if kind == "str":
        if not isinstance(value, str) or value == "":
            raise ValueError(f"{value!r} is not a non-empty text")
        return value
    if kind == "floats":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{value!r} is not a list of numbers")
        numbers = [_check_value(item, Column(column.name, "float", column.unit, "")) for item in value]
        if not numbers:
            raise ValueError("an empty list (leave the cell blank instead)")
        return numbers
    try:  # json
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{value!r} cannot be stored as JSON ({error})") from None


def _encode(value, column: Column) -> str:
    if value is None:
        return ""
    if column.type == "float":
        return repr(value)
    if column.type == "bool":
        return "true" if value else "false"
    if column.type == "floats":
        return ";".join(repr(item) for item in value)
    if column.type == "json":
        return json.dumps(value, sort_keys=True)
    return str(value)


def _decode(text: str, column: Column):
    """The cell's value, or raise ValueError saying what is wrong with it."""
    if text == "":
        return _check_value(None, column)
    kind = column.type
    if kind == "int":
        if not _INT.match(text):
            raise ValueError(f"{text!r} is not an integer")
        return int(text)
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number" + (" (a percentage? write the fraction)" if "%" in text
                                                            else "")) from None
        return _check_value(number, column)
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    if kind == "str":
        return text
    if kind == "floats":
        try:
            numbers = [float(item) for item in text.split(";")]
        except ValueError:
            raise ValueError(f"{text!r} is not a list of numbers joined by ';'") from None
        return _check_value(numbers, column)
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{text!r} is not JSON ({error})") from None


def _problems_text(problems: list[str]) -> str:
    shown = problems[:MAX_REPORTED_PROBLEMS]
    more = len(problems) - len(shown)
    return "\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")


# --------------------------------------------------------------------------- writing


def check_rows(rows: list[dict], table: str | Table) -> list[dict]:
    """Rows as the table holds them (plain values, every column present, None where blank).

    Raises TableError listing every row and column that does not fit: a required value missing,
    a key that is not a column, a value of the wrong type, a fraction outside [0, 1].
    """
    table = table if isinstance(table, Table) else get_table(table)
    checked, problems = [], []
    for index, row in enumerate(rows):
        unknown = [key for key in row if key not in table.column_names]
        if unknown:
            problems.append(f"row {index}: {unknown} not column(s) of table {table.name!r}")
        plain = {}
        for column in table.columns:
            try:
                plain[column.name] = _check_value(row.get(column.name), column)
            except ValueError as error:
                problems.append(f"row {index}, column {column.name} ({column.type}, {column.unit}): {error}")
        checked.append(plain)
    if problems:
        raise TableError(f"rows for table {table.name!r} do not fit its columns:{_problems_text(problems)}")
    return checked


def sidecar_path(path: str | Path) -> Path:
    """``NAME.json`` beside ``NAME.csv``."""
    return Path(path).with_suffix(".json")


def write_table(rows: list[dict], path: str | Path, table: str | Table, metadata: dict | None = None) -> Path:
    """Save ``rows`` as table ``table``: ``path`` (a .csv) and its sidecar ``NAME.json``; returns ``path``.

    Every row is checked first (:func:`check_rows`), so nothing is written unless all of it
    reads back. metadata: plain values stored in the sidecar (machine, arguments, ...). Both
    files are written atomically (the CSV first: a sidecar never describes a missing table).
    """
    table = table if isinstance(table, Table) else get_table(table)
    path = Path(path)
    if path.suffix != ".csv":
        raise ValueError(f"{path}: a results table is written as a .csv file")
    checked = check_rows(rows, table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in checked:
        writer.writerow([_encode(row[column.name], column) for column in table.columns])
    write_text(path, buffer.getvalue())
    write_json(sidecar_path(path), {
        "table": table.name, "version": table.version, "rows": len(checked),
        "columns": [{"name": c.name, "type": c.type, "unit": c.unit, "meaning": c.meaning, "optional": c.optional}
                    for c in table.columns],
        "metadata": metadata or {},
    })
    return path


# --------------------------------------------------------------------------- reading


def _rerun(tables: Table | list[Table] | None) -> str:
    """"rerun `COMMAND`" for the table(s) a file should hold."""
    tables = [tables] if isinstance(tables, Table) else tables or []
    if not tables:
        return "rerun the script that wrote it"
    return "rerun " + " or ".join(f"`{table.command}`" for table in tables)


def load_table(path: str | Path, table: str | Table | tuple[str, ...] | None = None) -> TableFile:
    """Read a table written by :func:`write_table`: ``path`` is its .csv or its .json sidecar.

    table: the table name expected (or a tuple of accepted names); None accepts any registered
    table. Raises FileNotFoundError if the CSV is missing, TableError (naming the file, and the
    line and column where it applies) if the sidecar is missing or names another table or schema
    version, or if the header or any cell does not match the columns. Every bad line is
    reported, not only the first.
    """
    path = Path(path)
    csv_path = path.with_suffix(".csv") if path.suffix == ".json" else path
    expected = (table.name,) if isinstance(table, Table) else (table,) if isinstance(table, str) else table
    hint = [TABLES[name] for name in expected or () if name in TABLES]  # the commands that write it
    if not csv_path.is_file():
        raise FileNotFoundError(f"no results table at {csv_path}: {_rerun(hint)} first")
    sidecar = sidecar_path(csv_path)
    if not sidecar.is_file():
        raise TableError(f"{csv_path}: no sidecar {sidecar.name} beside it naming its table and schema: written "
                         f"by the first version of the script (a display format), or not a results table; "
                         f"{_rerun(hint)}")
    try:
        description = json.loads(sidecar.read_text(encoding="utf-8"))
        name, version = description["table"], description["version"]
    except (ValueError, KeyError, TypeError) as error:
        raise TableError(f"{sidecar}: not a results table sidecar ({type(error).__name__}: {error}) "
                         f"(the first version wrote a list of rows here); {_rerun(hint)}") from None
    if expected and name not in expected:
        raise TableError(f"{csv_path} holds table {name!r}, expected {' or '.join(map(repr, expected))}")
    if name not in TABLES:
        raise TableError(f"{csv_path} holds table {name!r}, unknown to this version of scnn "
                         f"(known: {sorted(TABLES)})")
    schema = TABLES[name]
    if version != schema.version:
        raise TableError(f"{csv_path}: table {name!r} of schema version {version}; this scnn reads version "
                         f"{schema.version}: {_rerun(schema)}")
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"{csv_path}: empty file, not even a header; {_rerun(schema)}") from None
        except csv.Error as error:
            raise TableError(f"{csv_path}, line 1: damaged header ({error}); {_rerun(schema)}") from None
        missing = [column for column in schema.column_names if column not in header]
        unexpected = [column for column in header if column not in schema.column_names]
        if missing or unexpected:
            raise TableError(f"{csv_path}, line 1 (header): columns do not match table {name!r} version {version}: "
                             f"missing {missing}, unexpected {unexpected}; {_rerun(schema)}")
        repeated = sorted({column for column in header if header.count(column) > 1})
        if repeated:
            raise TableError(f"{csv_path}, line 1 (header): column(s) {repeated} appear twice; {_rerun(schema)}")
        columns = [schema.column(name) for name in header]
        rows, problems = [], []
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                problems.append(f"line {reader.line_num}: damaged ({error})")
                continue
            line = reader.line_num
            if len(cells) != len(header):
                count = f"{len(cells)} cell" + ("s" if len(cells) != 1 else "")
                problems.append(f"line {line}: {count}, the header has {len(header)} (a damaged line?)")
                continue
            row = {}
            for column, text in zip(columns, cells):
                try:
                    row[column.name] = _decode(text, column)
                except ValueError as error:
                    problems.append(f"line {line}, column {column.name} ({column.type}, {column.unit}): {error}")
            rows.append({name: row.get(name) for name in schema.column_names})
    if problems:
        raise TableError(f"{csv_path}: does not match table {name!r}:{_problems_text(problems)}")
    return TableFile(schema, rows, description.get("metadata", {}), csv_path)


def read_table(path: str | Path, table: str | Table | tuple[str, ...] | None = None) -> list[dict]:
    """The rows of a results table (see :func:`load_table`), one dict per line, every column present."""
    return load_table(path, table).rows


# --------------------------------------------------------------------------- for people


def format_value(value, column: Column | None) -> str:
    """A cell for people: fractions as percentages, operation counts in millions, thousands separated."""
    if value is None:
        return "–"
    unit = column.unit if column else ""
    if unit == "fraction":
        return f"{100 * value:.2f} %"
    if unit in ("MACs", "ACs", "operations", "FLOPs"):
        return f"{value / 1e6:.3f} M"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(format_value(item, None) for item in value)
    return str(value)


def markdown_table(rows: list[dict], table: str | Table, columns: list[str] | None = None,
                   labels: dict[str, str] | None = None) -> str:
    """A Markdown table of ``rows`` for people (never read back): ``columns`` of ``table`` (default all),
    headed by ``labels`` where given (else the column name and its unit)."""
    table = table if isinstance(table, Table) else get_table(table)
    columns = columns or table.column_names
    unknown = [name for name in columns if name not in table.column_names]
    if unknown:
        raise ValueError(f"{unknown} not column(s) of table {table.name!r}")
    labels = labels or {}

    def header(name):
        unit = table.column(name).unit
        return labels.get(name) or (f"{name} (%)" if unit == "fraction" else name)

    lines = ["| " + " | ".join(header(name) for name in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(name), table.column(name)) for name in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def schema_markdown(table: str | Table) -> str:
    """The table's section of docs/results_formats.md: files, command, and one line per column."""
    table = table if isinstance(table, Table) else get_table(table)
    lines = [f"### `{table.name}` (version {table.version})", "", f"{table.about[:1].upper()}{table.about[1:]}.", "",
             f"- files: {table.files}", f"- written by: `{table.command}`", "",
             "| column | type | unit | meaning |", "|---|---|---|---|"]
    columns = table.columns
    if table.based_on:
        inherited = get_table(table.based_on).columns
        if columns[:len(inherited)] != inherited:
            raise ValueError(f"table {table.name!r} does not start with the columns of {table.based_on!r}")
        columns = columns[len(inherited):]
        lines[-2:-2] = [f"The columns of `{table.based_on}`, then:", ""]
    for column in columns:
        kind = column.type + (", optional" if column.optional else "")
        lines.append(f"| `{column.name}` | {kind} | {column.unit or '–'} | {column.meaning.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the tables

# Profile.row() (scnn.metrics): the one flat format of a cost profile, per sample where a count.
PROFILE_COLUMNS = (
    Column("num_steps", "int", "steps", "time steps T the model runs per sample (1: not spiking)"),
    Column("num_samples", "int", "samples", "recordings the workload metrics are averaged over"),
    Column("parameters", "int", "count", "weights and biases (neuron beta and threshold excluded)"),
    Column("connection_sparsity", "float", "fraction", "zero weights / all weights of conv and linear layers"),
    Column("footprint_float32_bytes", "int", "bytes", "parameters and buffers as float32"),
    Column("footprint_int8_bytes", "int", "bytes", "8-bit weights and 32-bit biases"),
    Column("dense_macs", "int", "MACs", "dense multiply-accumulates per sample as executed (static first layer "
           "once, later layers T times; fvcore); FLOPs = 2 x MACs"),
    Column("dense_macs_per_step", "int", "MACs", "dense MACs per sample if every layer ran at every step "
           "(the reference code's convention)"),
    Column("effective_macs", "float", "MACs", "NeuroBench effective MACs per sample: real-valued inputs, zero "
           "inputs and weights skipped"),
    Column("effective_acs", "float", "ACs", "NeuroBench effective accumulates per sample: spike-fed layers, one "
           "per non-zero input per non-zero weight"),
    Column("synops", "float", "operations", "synaptic operations per sample: effective_macs + effective_acs"),
    Column("dense_synops", "float", "operations", "every input-weight pair of every layer and step, per sample"),
    Column("activation_sparsity", "float", "fraction", "zero activations / all activations (neurons x steps x "
           "samples; NeuroBench)"),
    Column("membrane_updates", "int", "updates", "neuron-state updates per sample (LIF neurons x T)"),
    Column("energy_float32_nj", "float", "nJ", "synaptic energy per sample, 45 nm float32 (effective MACs and "
           "ACs x Horowitz 2014 energies)"),
    Column("energy_int8_nj", "float", "nJ", "synaptic energy per sample, 45 nm int8"),
    Column("dense_energy_float32_nj", "float", "nJ", "energy of every dense MAC at float32 (the non-spiking "
           "equivalent)"),
    Column("dense_energy_int8_nj", "float", "nJ", "energy of every dense MAC at int8"),
)

_RUN_COLUMNS = (
    Column("run", "str", "path", "the training run folder (best.pt, results.json)"),
    Column("model", "str", "name", "model preset or spec the run trained"),
    Column("architecture", "str", "text", "the model's layers (spec string, or SSM width and state size)"),
    Column("accuracy", "float", "fraction", "test accuracy (the run's results.json, else measured)"),
    Column("quantized_accuracy", "float", "fraction", "test accuracy of its quantize.py run (RUN/int8 or "
           "--quantized)", optional=True),
)

register_table(Table(
    "profile", 1, _RUN_COLUMNS + PROFILE_COLUMNS, "OUT/profile.csv, profile.json, profile.md",
    "python experiments/profile_cost.py CHECKPOINT... --out OUT",
    "accuracy and cost per sample of trained checkpoints"))

register_table(Table(
    "compare", 1, _RUN_COLUMNS + PROFILE_COLUMNS + (
        Column("paper_accuracy", "float", "fraction", "the ISCAS 2023 paper's FSDD accuracy (random split)",
               optional=True),
        Column("paper_int8_accuracy", "float", "fraction", "the paper's INT8 accuracy", optional=True),
        Column("paper_flops", "float", "FLOPs", "the paper's FLOPs (fvcore on a whole batch)", optional=True),
    ), "OUT/compare.csv, compare.json, compare.md", "python experiments/compare.py RUN... --out OUT",
    "the profile table beside the paper's numbers", based_on="profile"))

register_table(Table(
    "quantization", 1, (
        Column("model", "str", "name", "the name given with --checkpoint NAME=PATH"),
        Column("run", "str", "path", "the quantize.py result folder of this row, relative to the table's folder "
               "(or absolute)"),
        Column("checkpoint", "str", "path", "the float checkpoint quantised (blank: QAT from scratch)", optional=True),
        Column("mode", "str", "name", "ptq, qat or scratch (QAT from random weights)"),
        Column("weight_bits", "int", "bits", "weight bit width"),
        Column("act_bits", "int", "bits", "input activation bit width"),
        Column("state_bits", "int", "bits", "membrane (state) bit width"),
        Column("per_channel", "bool", "", "per-channel weight scales"),
        Column("float_accuracy", "float", "fraction", "test accuracy of the float model", optional=True),
        Column("ptq_accuracy", "float", "fraction", "test accuracy after post-training quantisation", optional=True),
        Column("qat_accuracy", "float", "fraction", "test accuracy after quantisation-aware training "
               "(blank: PTQ only)", optional=True),
        Column("float_bytes", "int", "bytes", "float32 weights and biases", optional=True),
        Column("quantized_bytes", "int", "bytes", "weights packed at weight_bits, int32 biases"),
        Column("integer_prediction_agreement", "float", "fraction", "test recordings on which the integer "
               "reference predicts what the Brevitas model predicts", optional=True),
        Column("integer_spike_count_agreement", "float", "fraction", "... gives every LIF layer the same spike "
               "count", optional=True),
        Column("integer_logit_agreement", "float", "fraction", "... returns the same logits bit for bit",
               optional=True),
        Column("integer_samples", "int", "samples", "test recordings the agreement was measured on", optional=True),
        Column("onnx_prediction_agreement", "float", "fraction", "same prediction from the QCDQ ONNX export "
               "(onnxruntime)", optional=True),
        Column("qonnx_prediction_agreement", "float", "fraction", "same prediction from the QONNX export",
               optional=True),
        Column("wall_time_s", "float", "s", "wall time of the quantize.py run", optional=True),
    ), "OUT/summary.csv, summary.json, summary.md (one result folder per row: OUT/NAME_wWaAsS/)",
    "python benchmarks/quantization.py --checkpoint NAME=PATH --bits W,A,S ... --out OUT",
    "PTQ and QAT of float checkpoints at several bit widths"))

register_table(Table(
    "accuracy", 1, (
        Column("model", "str", "name", "model preset"),
        Column("seed", "int", "", "training seed"),
        Column("run", "str", "path", "the run folder, relative to the table's folder (or absolute)"),
        Column("test_accuracy", "float", "fraction", "test accuracy of the best-validation weights"),
        Column("val_accuracy", "float", "fraction", "best validation accuracy"),
        Column("best_epoch", "int", "epoch", "epoch of the best validation accuracy (1-based)"),
        Column("epochs_run", "int", "epochs", "epochs trained"),
        Column("seconds_per_epoch", "float", "s", "wall time per epoch"),
        Column("parameters", "int", "count", "weights and biases"),
    ), "OUT/summary.csv, summary.json, summary.md (one run folder per row: OUT/MODEL-seedS/)",
    "python benchmarks/accuracy.py --seeds 0 1 2 --epochs 30 --out OUT",
    "Models A, B and the control CNN on FSDD's official split, one row per seed"))

register_table(Table(
    "feature_presets", 1, (
        Column("candidate", "str", "text", "the candidate feature configuration's label"),
        Column("feature_preset", "str", "name", "the preset it starts from"),
        Column("feature_overrides", "json", "", "FeatureConfig fields changed from the preset (a JSON object)"),
        Column("seed", "int", "", "training seed"),
        Column("run", "str", "path", "the run folder, relative to the table's folder (or absolute)"),
        Column("val_accuracy", "float", "fraction", "best validation accuracy of Model B (T = 10)"),
        Column("best_val_loss", "float", "loss", "lowest validation loss over the epochs"),
    ), "OUT/summary.csv, summary.json, summary.md",
    "python benchmarks/feature_presets.py --epochs 20 --seeds 0 1 2 --val-fraction 0.3 --out OUT",
    "validation accuracy of Model B per MFCC configuration"))

register_table(Table(
    "feature_speed", 1, (
        Column("files", "int", "count", "recordings whose features were computed"),
        Column("feature_preset", "str", "name", "feature preset"),
        Column("workers", "int", "processes", "extraction worker processes"),
        Column("cached", "bool", "", "read from a warm feature cache"),
        Column("seconds", "float", "s", "wall time"),
    ), "OUT/summary.csv, summary.json", "python benchmarks/feature_speed.py --out OUT",
    "feature extraction time, cold and cached"))

_SPEED = "samples/s"
register_table(Table(
    "engine", 2, (
        Column("model", "str", "name", "model preset"),
        Column("num_steps", "int", "steps", "time steps T"),
        Column("batch_size", "int", "samples", "batch size"),
        Column("train_ref_samples_s", "float", _SPEED, "training throughput (with the optimiser step) of the "
               "reference step loop (snntorch.Leaky per layer and step)"),
        Column("train_engine_samples_s", "float", _SPEED, "training throughput of the engine"),
        Column("train_speedup", "float", "ratio", "median per-repetition ratio of reference to engine time"),
        Column("infer_ref_samples_s", "float", _SPEED, "inference throughput of the reference loop"),
        Column("infer_engine_samples_s", "float", _SPEED, "inference throughput of the engine (its kernels)"),
        Column("infer_speedup", "float", "ratio", "reference time / engine time, inference"),
        Column("infer_torch_speedup", "float", "ratio", "reference time / engine time with kernels switched off"),
        Column("train_engine_gflops", "float", "GFLOP/s", "useful conv/linear FLOPs of an engine training step"),
        Column("spike_density", "floats", "fraction", "spikes / neuron-steps of each LIF layer, in order"),
        Column("train_mem_ref_mib", "float", "MiB", "peak memory growth of three reference training steps",
               optional=True),
        Column("train_mem_engine_mib", "float", "MiB", "the same for the engine", optional=True),
        Column("train_sj_samples_s", "float", _SPEED, "training throughput of SpikingJelly's multi-step network "
               "(blank: not run, see spikingjelly_absent)", optional=True),
        Column("train_sj_speedup", "float", "ratio", "SpikingJelly time / engine time, training", optional=True),
        Column("infer_sj_samples_s", "float", _SPEED, "inference throughput of SpikingJelly", optional=True),
        Column("infer_sj_speedup", "float", "ratio", "SpikingJelly time / engine time, inference", optional=True),
        Column("train_mem_sj_mib", "float", "MiB", "peak memory growth of three SpikingJelly training steps",
               optional=True),
        Column("spikingjelly_absent", "str", "text", "why SpikingJelly did not run (blank: it ran)", optional=True),
        Column("infer_engine_gflops", "float", "GFLOP/s", "useful conv/linear FLOPs of an engine inference forward"),
        Column("train_matmul_ratio", "float", "ratio", "train_engine_gflops / a float32 1024^3 matmul's GFLOP/s "
               "in the same run (above 1: FLOPs the sparse paths skip are counted)"),
        Column("infer_matmul_ratio", "float", "ratio", "infer_engine_gflops / the same matmul's GFLOP/s"),
        Column("misses", "str", "text", "targets missed, joined by ';' (none: all measured ones met)"),
    ), "OUT/bench_engine.csv, bench_engine.json (machine: cores, threads, matmul GFLOP/s, load average, "
    "SpikingJelly version; targets), bench_engine_grid.png",
    "python benchmarks/bench_engine.py --out OUT", "engine against the step loop and SpikingJelly, random inputs"))

register_table(Table(
    "engine_epoch", 1, (
        Column("model", "str", "name", "model preset"),
        Column("reference_s", "float", "s", "one FSDD-sized training epoch (2,430 samples, batch 32, T = 10), "
               "reference loop"),
        Column("engine_s", "float", "s", "the same epoch, engine"),
    ), "OUT/bench_engine_epochs.csv, bench_engine_epochs.json", "python benchmarks/bench_engine.py --out OUT",
    "seconds per FSDD-sized epoch"))

register_table(Table(
    "engine_profile", 2, (
        Column("model", "str", "name", "model preset"),
        Column("num_steps", "int", "steps", "time steps T of the cell"),
        Column("batch_size", "int", "samples", "batch size of the cell"),
        Column("phase", "str", "name", "train (torch.profiler, operators) or infer (cProfile, Python-level "
               "functions: it sees the numba kernels)"),
        Column("op", "str", "name", "torch operator or function"),
        Column("self_ms_per_step", "float", "ms", "its own CPU time per training step or inference forward"),
        Column("share", "float", "fraction", "share of all operators' (functions') own time"),
        Column("calls_per_step", "float", "calls", "calls per training step or forward"),
    ), "OUT/bench_engine_profile.csv, bench_engine_profile.json", "python benchmarks/bench_engine.py --out OUT",
    "top operators of the engine at T = 10, batch 16 and in every cell that misses a target"))

register_table(Table(
    "engine_trained", 1, (
        Column("checkpoint", "str", "path", "trained checkpoint"),
        Column("test_samples", "int", "samples", "recordings of its test split"),
        Column("correct_reference", "int", "samples", "test recordings classified right, reference loop"),
        Column("correct_engine", "int", "samples", "... engine with its kernels"),
        Column("correct_engine_torch", "int", "samples", "... engine, torch path"),
        Column("spike_density", "floats", "fraction", "spikes / neuron-steps of each LIF layer on the test split"),
        Column("infer_ref_samples_s", "float", _SPEED, "inference throughput (batch 16) of the reference loop"),
        Column("infer_engine_samples_s", "float", _SPEED, "... of the engine"),
        Column("infer_speedup", "float", "ratio", "reference time / engine time"),
        Column("infer_torch_speedup", "float", "ratio", "reference time / engine time, torch path"),
    ), "OUT/bench_engine_trained.csv, bench_engine_trained.json",
    "python benchmarks/bench_engine.py --checkpoints CHECKPOINT... --out OUT", "inference on trained checkpoints"))

register_table(Table(
    "engine_trained_profile", 1, (
        Column("checkpoint", "str", "path", "trained checkpoint"),
        Column("function", "str", "name", "Python-level function (cProfile)"),
        Column("own_ms_per_forward", "float", "ms", "its own time per inference forward (batch 16)"),
    ), "OUT/bench_engine_trained_profile.csv, bench_engine_trained_profile.json",
    "python benchmarks/bench_engine.py --checkpoints CHECKPOINT... --out OUT", "where an inference forward goes"))

register_table(Table(
    "engine_crossover", 1, (
        Column("inputs", "int", "neurons", "LIF neurons feeding the linear layer"),
        Column("outputs", "int", "neurons", "outputs of the linear layer"),
        Column("density", "float", "fraction", "spike density set"),
        Column("dense_ms", "float", "ms", "LIF kernel + dense product"),
        Column("csr_ms", "float", "ms", "LIF fused with the CSR product"),
    ), "OUT/bench_engine_crossover.csv, bench_engine_crossover.json",
    "python benchmarks/bench_engine.py --crossover --out OUT", "fused CSR against dense product by spike density"))

register_table(Table(
    "engine_train_crossover", 1, (
        Column("inputs", "int", "neurons", "spiking inputs of the dense layer"),
        Column("outputs", "int", "neurons", "outputs of the dense layer"),
        Column("rows", "int", "rows", "T * B rows of spikes"),
        Column("density", "float", "fraction", "spike density set"),
        Column("dense_ms", "float", "ms", "dense forward + weight gradient (addmm, mm)"),
        Column("sparse_ms", "float", "ms", "the same from the active spikes (index build, CSR products)"),
        Column("sparse_gradient_only_ms", "float", "ms", "index build, dense forward, CSR weight gradient"),
    ), "OUT/bench_engine_train_crossover.csv, bench_engine_train_crossover.json",
    "python benchmarks/bench_engine.py --crossover-train --out OUT",
    "sparse against dense training products of a spike-fed dense layer by spike density"))

register_table(Table(
    "engine_conv_crossover", 1, (
        Column("in_channels", "int", "channels", "spike maps feeding the convolution"),
        Column("out_channels", "int", "channels", "filters"),
        Column("kernel", "int", "pixels", "square kernel size (stride 1, no padding)"),
        Column("height", "int", "pixels", "spike map height"),
        Column("width", "int", "pixels", "spike map width"),
        Column("rows", "int", "rows", "T * B spike maps"),
        Column("density", "float", "fraction", "spike density set"),
        Column("dense_ms", "float", "ms", "dense forward + weight and bias gradient (oneDNN)"),
        Column("sparse_ms", "float", "ms", "the same from the active spikes (index build, event-driven products)"),
        Column("sparse_gradient_only_ms", "float", "ms", "index build, dense forward, event-driven weight gradient"),
        Column("speedup", "float", "ratio", "median per-repetition ratio dense / event-driven"),
        Column("gradient_only_speedup", "float", "ratio", "median per-repetition ratio dense / gradient only"),
    ), "OUT/bench_engine_conv_crossover.csv, bench_engine_conv_crossover.json",
    "python benchmarks/bench_engine.py --crossover-conv --out OUT",
    "event-driven against dense training products of a spike-fed convolution by spike density"))

register_table(Table(
    "neuron_speed", 1, (
        Column("case", "str", "name", "one layer of a neuron (rleaky_all_to_all, ...) or a streaming preset"),
        Column("reference", "str", "text", "what the fused engine is timed against: snntorch loop or step loop"),
        Column("num_steps", "int", "steps", "time steps T"),
        Column("batch_size", "int", "samples", "batch size"),
        Column("train_ref_samples_s", "float", _SPEED, "training throughput of the step loop (SGD step included)"),
        Column("train_fused_samples_s", "float", _SPEED, "training throughput of the fused engine"),
        Column("train_speedup", "float", "ratio", "median per-repetition ratio of step-loop to fused time"),
        Column("infer_ref_samples_s", "float", _SPEED, "inference throughput of the step loop"),
        Column("infer_fused_samples_s", "float", _SPEED, "inference throughput of the fused engine"),
        Column("infer_speedup", "float", "ratio", "step-loop time / fused time, inference"),
        Column("spike_density", "floats", "fraction", "spikes / neuron-steps of each spiking layer, in order"),
        Column("same_spikes", "bool", "flag", "both forms gave identical spikes in every layer"),
    ), "OUT/bench_neurons.csv, bench_neurons.json (machine, threads, load average)",
    "python benchmarks/bench_neurons.py --out OUT", "fused RLeaky, Synaptic, ALIF against their step loops"))

register_table(Table(
    "noise", 1, (
        Column("checkpoint", "str", "path", "the checkpoint evaluated"),
        Column("noise", "str", "name", "none (clean), white, pink, brown or babble (other test recordings)"),
        Column("snr_db", "float", "dB", "signal-to-noise ratio mixed in, over the whole recording as read "
               "(blank for none)", optional=True),
        Column("accuracy", "float", "fraction", "test accuracy with that noise"),
        Column("num_test", "int", "samples", "test recordings"),
        Column("seed", "int", "", "noise seed"),
        Column("measured_snr_db_min", "float", "dB", "lowest SNR measured on the mixtures", optional=True),
        Column("measured_snr_db_max", "float", "dB", "highest SNR measured on the mixtures", optional=True),
    ), "OUT/noise.csv, noise.json, noise.png, noise_results.json (noise_val.* with --noise-on val)",
    "scnn evaluate --checkpoint CHECKPOINT --noise white,pink,babble --snr 20,10,5,0 --out OUT",
    "accuracy of a checkpoint on its test (or, --noise-on val, validation) recordings with noise mixed in at "
    "each SNR"))

register_table(Table(
    "cv", 1, (
        Column("fold", "int", "", "fold number (1-based; the run folder OUT/foldN)"),
        Column("test_speakers", "str", "names", "the speakers (groups) this fold tests on, joined by ';'"),
        Column("val_speakers", "str", "names", "the validation speakers, joined by ';' (blank: validation carved "
               "out of the training speakers)", optional=True),
        Column("run", "str", "path", "the fold's run folder, relative to the table's folder"),
        Column("test_accuracy", "float", "fraction", "test accuracy of the best-validation weights"),
        Column("val_accuracy", "float", "fraction", "best validation accuracy"),
        Column("final_val_accuracy", "float", "fraction", "validation accuracy of the last epoch (what a refit, "
               "which keeps its last epoch, is chosen by)", optional=True),
        Column("best_epoch", "int", "epoch", "epoch of the best validation accuracy (1-based)"),
        Column("epochs_run", "int", "epochs", "epochs trained"),
        Column("test_samples", "int", "samples", "test recordings of the fold"),
        Column("seconds_per_epoch", "float", "s", "wall time per epoch"),
        Column("refit_test_accuracy", "float", "fraction", "test accuracy of the fold's refit (OUT/foldN/refit: "
               "trained on the validation speakers too, last epoch; blank: no refit)", optional=True),
    ), "OUT/cv.csv, cv.json, cv.md, cv_summary.json (mean ± std, per speaker, per class), cv_accuracy.png",
    "scnn cv --config FILE [--folds K] --out OUT", "cross-validation by speaker, one row per fold"))

register_table(Table(
    "c_streaming_size", 1, (
        Column("preset", "str", "name", "streaming preset (streaming: ALIF neurons; streaming_rleaky: RLeaky)"),
        Column("hidden", "json", "neurons", "hidden layer sizes (a JSON list)"),
        Column("input_shape", "json", "", "the integer artefact's input shape (a JSON list)"),
        Column("neurons", "str", "names", "each layer's activation type in the artefact, joined by ';'"),
        Column("weight_bytes", "int", "bytes", "weights and biases in the generated C"),
        Column("text_bytes", "int", "bytes", "the C library's .text (arm-none-eabi-size, -O2)"),
        Column("data_bytes", "int", "bytes", "the C library's .data"),
        Column("bss_bytes", "int", "bytes", "the C library's .bss"),
        Column("flash_bytes", "int", "bytes", "flash of the library: text + data"),
        Column("state_bytes", "int", "bytes", "the caller's state struct (scnn_state_t)"),
        Column("ram_bytes", "int", "bytes", "state + one frame of input codes (the stack not counted)"),
        Column("fits_1mib_flash_256kib_ram", "bool", "", "flash below 1 MiB and RAM below 256 KiB"),
        Column("qemu_bit_exact", "bool", "", "the test vectors bit-exact under qemu (MPS2-AN386; blank: --qemu "
               "not given)", optional=True),
    ), "OUT/c_streaming_size.csv, c_streaming_size.json (limits; the Cortex-M4 harness's sizes per preset), "
    "OUT/PRESET/ (integer artefact, C)",
    "python benchmarks/c_streaming_size.py --out OUT [--qemu] [--hidden 256 256]",
    "flash and RAM of the streaming presets' INT8 C code on a Cortex-M4: real shapes, random weights "
    "(sizes do not depend on them), checked bit-exact on the host first"))

register_table(Table(
    "recipe_costs", 1, (
        Column("recipe", "str", "name", "the run config (configs/RECIPE.yaml)"),
        Column("benchmark", "str", "name", "gsc35, gsc12, shd or ssc"),
        Column("classes", "int", "count", "classes of the benchmark"),
        Column("parameters", "int", "count", "weights and biases"),
        Column("macs_per_sample", "int", "MACs", "dense MACs per sample as executed (the SSM's in recurrent mode)"),
        Column("input_shape", "json", "", "the feature shape of one sample, [channels, rows, frames] (a JSON list)"),
        Column("timed_samples", "int", "samples", "training samples timed (after one warm-up batch)"),
        Column("seconds_per_10k_samples", "float", "s", "CPU time of training on 10,000 samples (forward, backward, "
               "optimiser step; random inputs of the recipe's shape)"),
        Column("train_size", "int", "samples", "the benchmark's published training-set size (blank: not known "
               "without the data)", optional=True),
        Column("seconds_per_epoch", "float", "s", "seconds_per_10k_samples x train_size / 10,000 (blank: size not "
               "known)", optional=True),
    ), "OUT/recipe_costs.csv, recipe_costs.json (machine, threads, batches, training-set sizes)",
    "python benchmarks/recipe_costs.py --threads 1 --batches 10 --out OUT",
    "parameters, dense MACs per sample and CPU training time of the benchmark recipes (configs/gsc*, shd*, ssc*) "
    "on random inputs; no accuracy"))

register_table(Table(
    "stream_cost", 1, (
        Column("checkpoint", "str", "path", "the streaming checkpoint"),
        Column("samples", "int", "samples", "test recordings streamed"),
        Column("repeats", "int", "passes", "passes over the recordings; the fastest is kept"),
        Column("frame_ms", "float", "ms", "audio per frame (one hop)"),
        Column("front_end_ms_per_frame", "float", "ms", "compute per frame of the causal front end alone"),
        Column("numpy_ms_per_frame", "float", "ms", "compute per frame of the Streamer with the numpy frame "
               "runner (front end included)"),
        Column("torch_ms_per_frame", "float", "ms", "the same with model.step (torch)"),
        Column("numpy_real_time_factor", "float", "ratio", "numpy_ms_per_frame / frame_ms (below 1: faster than "
               "real time)"),
        Column("torch_real_time_factor", "float", "ratio", "torch_ms_per_frame / frame_ms"),
        Column("synops_per_sample", "float", "operations", "NeuroBench effective synaptic operations per recording"),
        Column("seconds_of_audio_per_sample", "float", "s", "audio one recording covers (frames x hop)"),
        Column("synops_per_second_of_audio", "float", "operations", "synops_per_sample / "
               "seconds_of_audio_per_sample"),
        Column("dense_macs_per_second_of_audio", "float", "MACs", "dense MACs per recording / "
               "seconds_of_audio_per_sample"),
        Column("parameters", "int", "count", "weights and biases of the streaming model"),
        Column("integer_numpy_ms_per_frame", "float", "ms", "the integer artefact from input codes, numpy "
               "IntegerStreamer, per frame (blank: no --integer)", optional=True),
        Column("integer_c_ms_per_frame", "float", "ms", "the same, exported C (gcc -O3; process start subtracted)",
               optional=True),
        Column("integer_c_bit_exact", "bool", "", "the C logits equal the numpy integer logits (checked before "
               "timing)", optional=True),
        Column("integer_numpy_real_time_factor", "float", "ratio", "integer_numpy_ms_per_frame / frame_ms",
               optional=True),
        Column("integer_c_real_time_factor", "float", "ratio", "integer_c_ms_per_frame / frame_ms", optional=True),
        Column("baseline_checkpoint", "str", "path", "a whole-word model for comparison (blank: no --baseline)",
               optional=True),
        Column("baseline_synops_per_inference", "float", "operations", "its effective synaptic operations per "
               "recording", optional=True),
        Column("baseline_dense_macs_per_inference", "int", "MACs", "its dense MACs per recording", optional=True),
        Column("baseline_parameters", "int", "count", "its weights and biases", optional=True),
    ), "OUT/summary.csv, summary.json (machine, arguments), stream_cost.json (the same numbers nested), "
    "OUT/c/ (with --integer)",
    "python benchmarks/stream_cost.py --checkpoint CHECKPOINT [--baseline CHECKPOINT] [--integer STEM] --out OUT",
    "compute per 16 ms frame on one core, real-time factor and synaptic operations per second of audio of a "
    "streaming model, one row per run"))

register_table(Table(
    "c_latency", 1, (
        Column("checkpoint", "str", "path", "the float checkpoint, post-training quantised to 8/8/8 bits"),
        Column("model", "str", "text", "the model's spec string"),
        Column("num_steps", "int", "steps", "time steps T"),
        Column("samples", "int", "samples", "test recordings timed"),
        Column("repeats", "int", "runs", "timed runs; the fastest is kept"),
        Column("c_passes", "int", "passes", "times the C harness classifies the samples per timed run"),
        Column("c_bit_exact_with_numpy", "bool", "", "both C builds return the numpy reference's logits and spike "
               "counts"),
        Column("test_accuracy_integer", "float", "fraction", "accuracy of the integer model on the timed samples"),
        Column("c_ms", "float", "ms", "one inference of the generated C, gcc -O3 -std=c99 (process start "
               "subtracted)"),
        Column("c_o2_ms", "float", "ms", "the same, gcc -O2"),
        Column("numpy_reference_ms", "float", "ms", "the numpy integer reference, one sample at a time"),
        Column("numpy_reference_batched_ms", "float", "ms", "the numpy integer reference on all samples at once, "
               "per sample"),
        Column("torch_float_ms", "float", "ms", "the float model in torch, one sample at a time"),
        Column("torch_brevitas_twin_ms", "float", "ms", "the Brevitas twin in torch, one sample at a time"),
        Column("c_speedup_over_numpy", "float", "ratio", "numpy_reference_ms / c_ms"),
        Column("c_o2_speedup_over_numpy", "float", "ratio", "numpy_reference_ms / c_o2_ms"),
        Column("c_state_bytes", "int", "bytes", "the C state struct"),
        Column("c_weight_bytes", "int", "bytes", "weights and biases in the C arrays"),
        Column("m4_flash_bytes", "int", "bytes", "Cortex-M4 library text + data (blank: no arm-none-eabi "
               "toolchain)", optional=True),
        Column("m4_ram_bytes", "int", "bytes", "Cortex-M4 data + bss + state", optional=True),
        Column("m4_fits_1mib_flash_256kib_ram", "bool", "", "flash at most 1 MiB and RAM at most 256 KiB",
               optional=True),
    ), "OUT/c_latency.csv, c_latency.json, latency.json (the same numbers nested), OUT/integer.*, OUT/c/",
    "python benchmarks/c_latency.py --checkpoint CHECKPOINT --samples 50 --repeats 5 --c-passes 20 --out OUT",
    "latency per inference of a quantised model on this CPU: generated C, numpy integer reference and torch, "
    "in one run"))

register_table(Table(
    "cache_scale", 1, (
        Column("files", "int", "count", "synthetic 16 kHz recordings (Speech Commands' format)"),
        Column("clip_seconds", "float", "s", "length of each recording"),
        Column("threads", "int", "threads", "extraction processes, hashing threads and torch threads"),
        Column("shard_size", "int", "count", "recordings per cache shard"),
        Column("shards", "int", "count", "shards written"),
        Column("feature_shape", "json", "", "[rows, frames] of one recording's features (a JSON list)"),
        Column("wav_write_s", "float", "s", "writing the missing recordings (0 when kept from an earlier run)"),
        Column("build_s", "float", "s", "building the cache cold: extraction and shard writing"),
        Column("build_files_per_s", "float", "files/s", "files / build_s"),
        Column("hash_s", "float", "s", "every file's SHA-256 alone"),
        Column("warm_start_s", "float", "s", "a second call that finds the cache built: the digests plus opening "
               "the memory-mapped shards"),
        Column("read_s_per_10k", "float", "s", "an epoch's random-order batches gathered from the shards and "
               "normalised, per 10,000 samples"),
        Column("split_file_s", "float", "s", "the split normalised once into a memory-mapped file "
               "(prepare_data's way for such sets)"),
        Column("mapped_read_s_per_10k", "float", "s", "an epoch's random batches indexed from that file, per "
               "10,000 samples"),
        Column("train_s_per_10k", "float", "s", "gsc35_cnn forward, backward and AdamW step on such batches, per "
               "10,000 samples (blank: --train-batches 0)", optional=True),
        Column("peak_rss_mb_before_training", "float", "MB", "peak resident memory while building, hashing and "
               "reading (mapped file pages included)"),
        Column("rss_anon_mb_after_reading", "float", "MB", "memory the process holds itself (RssAnon; blank: not "
               "Linux)", optional=True),
        Column("rss_file_mb_after_reading", "float", "MB", "mapped file pages the kernel may drop (RssFile)",
               optional=True),
        Column("cache_mb", "float", "MB", "the cache on disk"),
    ), "OUT/cache_scale.csv, cache_scale.json (the WAVs and the cache stay under --work)",
    "python benchmarks/cache_scale.py --files 20000 --threads 1 --work WORK --out OUT",
    "the sharded feature cache at the scale of Speech Commands: building, a warm start, reading an epoch, "
    "training on it"))

register_table(Table(
    "faults", 1, (
        Column("fault", "str", "name", "the fault injected (issue 21's table, one row each)"),
        Column("status", "str", "name", "handled (met correctly), refused (stopped with one clear line, nothing "
               "contradictory written) or FAILED"),
        Column("reason", "str", "text", "what happened"),
        Column("seconds", "float", "s", "wall time of the row"),
    ), "OUT/faults.csv, faults.json (arguments)",
    "python benchmarks/faults.py --data-dir DIR --out OUT",
    "fault injection on a small FSDD setup: how each fault is met"))
