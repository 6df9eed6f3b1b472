"""One-parameter sweeps: vary beta, threshold, num_steps (or any config field), several seeds per point.

A sweep folder holds:

- ``sweep.json``: what the sweep is (model, parameter, values, seeds, the fixed training and
  data config). A rerun into the folder must be the same sweep: a different model,
  parameter or fixed setting is refused naming each field (old -> new); more values or seeds
  extend it. The values keep their JSON types (0.5, 10, "atan", true).
- ``sweep.csv``: one row per finished (value, seed) point, appended at once (the file is
  rewritten atomically), so an interrupted sweep resumes where it stopped. A damaged line
  is reported by file and line number and left out; the rest loads.
- ``{param}={value}/seed{seed}/``: each point's run folder (an interrupted point resumes).

Features are prepared once and shared by every run. The folder is locked (``.lock``) while
the sweep runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
import warnings
from dataclasses import asdict, fields, replace
from pathlib import Path

from scnn.data.prepare import DataConfig, PreparedData, prepare_data
from scnn.io import write_json, write_text
from scnn.train.config import TrainConfig
from scnn.train.loop import RESULT_NEUTRAL_DATA_FIELDS, RESULT_NEUTRAL_TRAIN_FIELDS, train
from scnn.train.run import (RunFolderError, SettingsMismatch, check_output_folder, folder_lock,
                            remove_stale_temporaries, same_folder, setting_differences)

SWEEP_COLUMNS = ["param", "value", "seed", "val_accuracy", "test_accuracy", "activation_sparsity",
                 "effective_acs_per_sample", "effective_macs_per_sample", "dense_macs_per_sample", "epochs_run",
                 "wall_time_s"]
NUMBER_COLUMNS = SWEEP_COLUMNS[2:]
RECORD_NAME = "sweep.json"
SWEEP_FILES = ("sweep.json", "sweep.csv", "sweep_summary.json", "sweep.png")
RECORD_KIND = "scnn one-parameter sweep"


class DamagedSweepRow(UserWarning):
    """A line of sweep.csv could not be read; the message names the file and the line."""


def _config_for(base: TrainConfig, param: str, value) -> TrainConfig:
    """A training config with ``param`` set: a TrainConfig field, else a model option."""
    if param in {f.name for f in fields(TrainConfig)}:
        return replace(base, **{param: value})
    return replace(base, model_overrides={**base.model_overrides, param: value})


# --------------------------------------------------------------------------- values and their types


def check_sweep_values(param: str, values: list, base: TrainConfig, param_option: str = "sweep parameter",
                       values_option: str = "sweep value") -> list:
    """``param`` is a TrainConfig field or an option of ``base``'s model, and every value has its type and
    range (the checks of ``train.*`` and ``model.*`` in a run config); otherwise a ValueError naming the
    option (``param_option``, ``values_option``: how the caller's user gave them) and the allowed values,
    before any data work. Returns ``values`` unchanged."""
    import typing

    from scnn.train.run_config import check_model_options, model_config_class
    from scnn.validate import check_type

    train_fields = [f.name for f in fields(TrainConfig) if f.name not in ("model", "model_overrides")]
    model_fields = [f.name for f in fields(model_config_class(base.model))]
    if param not in train_fields and param not in model_fields:
        raise ValueError(f"{param_option} {param}: no such option of {base.model} or of training; model options: "
                         f"{', '.join(model_fields)}; training: {', '.join(train_fields)}")
    if not values:
        raise ValueError(f"{values_option}: no values of {param} to sweep")
    hints = typing.get_type_hints(TrainConfig)
    for value in values:
        try:
            if param in train_fields:
                replace(base, **{param: check_type(f"train.{param}", value, hints[param])})
            else:
                check_model_options({"name": base.model, **base.model_overrides, param: value})
        except ValueError as error:
            raise ValueError(f"{values_option} {value}: {error}") from None
    return values


def value_key(value) -> tuple:
    """Identity of a swept value, hashable: 1 and 1.0 are the same point, True and "True" and 1 are not.

    Lists (``downsample`` = [1, 2, 1, 1]) and dicts are keyed element by element, as tuples, so they
    can be looked up in sets; the values themselves keep their types (lists stay lists in rows and
    sweep.json)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(value_key(item) for item in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(key), value_key(item)) for key, item in value.items())))
    return (type(value).__name__, value)


def _sort_key(value) -> tuple:
    if isinstance(value, (bool, int, float)):
        return (0, float(value), "")
    return (1, 0.0, "") if value is None else (2, 0.0, str(value))


def parse_value(text: str, known: list | None = None):
    """A value as written in sweep.csv, with its type: one of ``known`` (the sweep record's
    values) whose text matches, else a bool, int, float, None, or the text itself."""
    for value in known or []:
        if _csv_text(value) == text:
            return value
    if text in ("True", "False"):
        return text == "True"
    if text in ("", "None"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _csv_text(value) -> str:
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- sweep.csv


def read_sweep(path: str | Path) -> list[dict]:
    """Rows of a sweep CSV with numbers parsed and values typed (empty list if the file does not exist).

    Values take their types from ``sweep.json`` beside the file when there is one. A damaged
    line (fields missing or extra, a number that does not parse) is left out with a
    :class:`DamagedSweepRow` warning naming the file and the line; the rest loads. A file
    whose header is not a sweep's raises ValueError naming it.
    """
    path = Path(path)
    if not path.exists():
        return []
    record = _read_record(path.parent / RECORD_NAME)
    known = record["values"] if record else None
    rows = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("param", "value", "seed") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}, line 1: not a sweep CSV header (lacks {', '.join(missing)})")
        for raw in reader:
            problem = _row_problem(raw, reader.fieldnames)
            if problem is None:
                try:
                    row = {"param": raw["param"], "value": parse_value(raw["value"], known)}
                    row.update({key: _number(raw[key]) for key in raw if key not in ("param", "value")})
                except ValueError as error:
                    problem = str(error)
            if problem is not None:
                warnings.warn(f"{path}, line {reader.line_num}: damaged row left out ({problem})", DamagedSweepRow,
                              stacklevel=2)
                continue
            rows.append(row)
    return rows


def _row_problem(raw: dict, columns: list[str]) -> str | None:
    if None in raw:
        return f"{len(columns) + len(raw[None])} fields where the header has {len(columns)}"
    absent = [key for key in columns if raw.get(key) is None]
    if absent:
        return f"{len(columns) - len(absent)} fields where the header has {len(columns)}"
    if not raw["param"]:
        return "no parameter name"
    if not raw["seed"]:
        return "no seed"
    return None


def _number(text: str):
    if text in ("", "None"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _write_sweep(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SWEEP_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "value": _csv_text(row["value"])})
    write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------- sweep.json: what the folder holds


def sweep_record(param: str, values: list, seeds: list[int], base: TrainConfig, data_config: DataConfig) -> dict:
    """What a sweep is: its model, parameter, values, seeds and fixed settings.

    The fixed training config leaves out the seed (each point sets its own), the swept
    parameter, and fields that do not change results (threads, device); the data config
    leaves out the feature cache folder and the download switch.
    """
    fixed = {k: v for k, v in asdict(base).items()
             if k not in ("model", "seed", param, *RESULT_NEUTRAL_TRAIN_FIELDS)}  # (the model: a field of its own)
    fixed["model_overrides"] = {k: v for k, v in base.model_overrides.items() if k != param}
    data = {k: v for k, v in asdict(data_config).items() if k not in RESULT_NEUTRAL_DATA_FIELDS}
    return {"kind": RECORD_KIND, "version": 1, "model": base.model, "param": param, "values": list(values),
            "seeds": list(seeds), "train_config": fixed, "data_config": data}


def _read_record(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read ({error}); it says what the sweep in {path.parent} is") from None
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND:
        raise ValueError(f"{path} is not a sweep record (no \"kind\": \"{RECORD_KIND}\")")
    return record


def _legacy_record(out_dir: Path, rows: list[dict]) -> dict | None:
    """The record of a sweep folder written before sweep.json existed, rebuilt from a point's results.json."""
    for row in rows:
        results = out_dir / f"{row['param']}={_csv_text(row['value'])}" / f"seed{row['seed']}" / "results.json"
        try:
            config = json.loads(results.read_text())["config"]
            base = TrainConfig(**{**asdict(TrainConfig()), **config["train_config"]})
            data_config = DataConfig.from_dict({**asdict(DataConfig()), **config["data_config"]})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return sweep_record(row["param"], [], [], base, data_config)
    return None


def sweep_differences(old: dict, new: dict) -> list[str]:
    """Fields where two sweep records differ, except the values and seeds (more of them extend a sweep)."""
    lines = setting_differences({k: old.get(k) for k in ("model", "param")},
                                {k: new.get(k) for k in ("model", "param")})
    lines += setting_differences(old.get("train_config", {}), new["train_config"], "train_config.")
    lines += setting_differences(old.get("data_config", {}), new["data_config"], "data_config.", ignore=("data_dir",))
    before, after = old.get("data_config", {}).get("data_dir"), new["data_config"].get("data_dir")
    if not same_folder(before, after):
        lines.append(f"data_config.data_dir: {before!r} -> {after!r}")
    return lines


def _merged(old: list, new: list, key=lambda v: v) -> list:
    """``old`` followed by the items of ``new`` not in it (by ``key``), each once."""
    merged, seen = [], set()
    for item in [*old, *new]:
        if key(item) not in seen:
            seen.add(key(item))
            merged.append(item)
    return merged


def check_sweep_folder(out_dir: Path, record: dict, rows: list[dict]) -> dict:
    """The folder's record merged with ``record`` (values and seeds joined); SettingsMismatch if they differ.

    A folder with sweep rows but no sweep.json (an older version's sweep) is checked against a
    record rebuilt from one of its points' results.json; if none can be read, it is refused.
    """
    path = out_dir / RECORD_NAME
    old = _read_record(path)
    if old is None and rows:
        old = _legacy_record(out_dir, rows)
        if old is None:
            raise RunFolderError(f"{out_dir} holds sweep.csv but no {RECORD_NAME} or point results saying what "
                                 "sweep it is; pass --overwrite to replace it, or choose another --out")
        old["values"] = _merged([], [row["value"] for row in rows], value_key)
        old["seeds"] = _merged([], [row["seed"] for row in rows])
    if old is None:
        return record
    lines = sweep_differences(old, record)
    if lines:
        raise SettingsMismatch(f"{out_dir} holds another sweep (old -> new): {'; '.join(lines)}. Rerun it with its "
                               "own settings, pass --overwrite to replace it, or choose another --out")
    return {**record, "values": _merged(old["values"], record["values"], value_key),
            "seeds": _merged(old["seeds"], record["seeds"])}


def _remove_sweep(out_dir: Path) -> None:
    """Remove a sweep's own files and point folders (nothing else in the folder)."""
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedSweepRow)
        try:
            rows = read_sweep(out_dir / "sweep.csv")
            record = _read_record(out_dir / RECORD_NAME)
        except ValueError:
            record = None
    params = {row["param"] for row in rows} | ({record["param"]} if record else set())
    for name in SWEEP_FILES:  # the record and the rows first: a removal cut short leaves no claim behind
        (out_dir / name).unlink(missing_ok=True)
    for param in params:
        for folder in out_dir.glob(f"{param}=*"):
            if folder.is_dir():
                shutil.rmtree(folder)


# --------------------------------------------------------------------------- running and summarising


def run_sweep(param: str, values: list, seeds: list[int], base: TrainConfig, data_config: DataConfig,
              out_dir: str | Path, data: PreparedData | None = None, progress: bool = True,
              overwrite: bool = False) -> list[dict]:
    """Train one run per (value, seed) not yet in ``out_dir/sweep.csv``; returns all rows.

    Every run is selected on validation accuracy and evaluated once on test, as in ``train``.
    The folder must hold this sweep or none (see :func:`check_sweep_folder`); overwrite: remove
    the sweep it holds (sweep.json, sweep.csv, summary, figure, point folders) and start afresh.
    A point whose run was interrupted resumes from its ``last.pt``.
    """
    check_sweep_values(param, values, base)
    out_dir = check_output_folder(out_dir)
    with folder_lock(out_dir):
        remove_stale_temporaries(out_dir)
        csv_path = out_dir / "sweep.csv"
        if overwrite:
            rows = []
        else:
            rows = read_sweep(csv_path)
            record = check_sweep_folder(out_dir, sweep_record(param, values, seeds, base, data_config), rows)
        data = data if data is not None else prepare_data(data_config, progress=progress)
        if overwrite:
            _remove_sweep(out_dir)
            record = sweep_record(param, values, seeds, base, data_config)
        write_json(out_dir / RECORD_NAME, record)
        done = {(row["param"], value_key(row["value"]), row["seed"]) for row in rows}
        for value in values:
            for seed in seeds:
                if (param, value_key(value), seed) in done:
                    continue
                config = _config_for(replace(base, seed=seed), param, value)
                point = out_dir / f"{param}={_csv_text(value)}" / f"seed{seed}"
                start = time.perf_counter()
                results = train(config, data_config, point, resume=(point / "last.pt").exists(), progress=False,
                                data=data)
                rows.append({"param": param, "value": value, "seed": seed,
                             "val_accuracy": results["val_accuracy"], "test_accuracy": results["test_accuracy"],
                             "activation_sparsity": results["activation_sparsity"],
                             "effective_acs_per_sample": results["effective_acs_per_sample"],
                             "effective_macs_per_sample": results["effective_macs_per_sample"],
                             "dense_macs_per_sample": results["dense_macs_per_sample"],
                             "epochs_run": results["epochs_run"], "wall_time_s": time.perf_counter() - start})
                done.add((param, value_key(value), seed))
                _write_sweep(csv_path, rows)
                if progress:
                    sparsity = results["activation_sparsity"]
                    print(f"{param}={value} seed {seed}: val {results['val_accuracy']:.4f} test "
                          f"{results['test_accuracy']:.4f} sparsity "
                          f"{'n/a' if sparsity is None else f'{sparsity:.3f}'}", flush=True)
    return rows


def summarize_sweep(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (parameter, value): one row each, sorted by parameter,
    then value (numbers before text). Rows of another parameter never share a group."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["param"], value_key(row["value"])), []).append(row)
    summary = []
    for (param, _), group in sorted(groups.items(), key=lambda item: (item[0][0], _sort_key(item[1][0]["value"]))):
        entry = {"param": param, "value": group[0]["value"], "seeds": len(group)}
        for key in ("val_accuracy", "test_accuracy", "activation_sparsity", "effective_acs_per_sample"):
            numbers = [row[key] for row in group if row.get(key) is not None and not _is_nan(row[key])]
            entry[f"{key}_mean"] = statistics.mean(numbers) if numbers else None
            entry[f"{key}_std"] = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
        summary.append(entry)
    return summary


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
