"""Results tables: rows written through the schema read back equal; the reader refuses files that do not
match (missing or renamed columns, percentages in fraction columns, damaged lines, the first version's display
files), naming the file, the line and the column; Profile.row() is the one flat profile format; every benchmark
writes a table that reads back; docs/results_formats.md lists exactly the registered tables."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scnn.metrics import ENERGY_45NM_PJ, profile_model
from scnn.models import create_model
from scnn.result_tables import (PROFILE_COLUMNS, TABLES, Column, Table, TableError, check_rows, load_table,
                                markdown_table, read_table, register_table, schema_markdown, write_table)
from scnn.viz.tables import quantization_row

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy_table():
    """A table with one column of every type, registered for the test only."""
    table = register_table(Table("toy", 3, (
        Column("name", "str", "text", "a label"),
        Column("count", "int", "count", "an integer"),
        Column("share", "float", "fraction", "a fraction"),
        Column("seconds", "float", "s", "a duration", optional=True),
        Column("flag", "bool", "", "yes or no"),
        Column("density", "floats", "fraction", "one per layer", optional=True),
        Column("settings", "json", "", "a nested setting", optional=True),
    ), "OUT/toy.csv", "python make_toy.py --out OUT", "a toy"))
    yield table
    del TABLES["toy"]


TOY_ROWS = [
    {"name": "model_b (6C3-128FC-10FC)", "count": 2_770_712, "share": 0.1 + 0.2, "seconds": 1e-7, "flag": True,
     "density": [0.25, 1 / 3], "settings": {"n_fft": 512, "top_db": None}},
    {"name": 'quoted "name", with a comma', "count": -3, "share": 1.0, "seconds": None, "flag": False,
     "density": None, "settings": None},
]


def test_rows_round_trip_exactly(tmp_path, toy_table):
    path = write_table(TOY_ROWS, tmp_path / "toy.csv", "toy", metadata={"machine": "test"})
    loaded = load_table(path, "toy")
    assert loaded.rows == TOY_ROWS, "floats keep every digit, None stays None, lists and JSON come back"
    assert type(loaded.rows[0]["count"]) is int and type(loaded.rows[0]["flag"]) is bool
    assert loaded.metadata == {"machine": "test"} and loaded.table is toy_table
    sidecar = json.loads((tmp_path / "toy.json").read_text())
    assert (sidecar["table"], sidecar["version"], sidecar["rows"]) == ("toy", 3, 2)
    assert [c["name"] for c in sidecar["columns"]] == toy_table.column_names
    assert read_table(tmp_path / "toy.json") == TOY_ROWS, "the sidecar's path reads the same table"
    # Raw values on disk: a fraction is a fraction, an integer has no separator.
    lines = path.read_text().splitlines()
    assert lines[0] == "name,count,share,seconds,flag,density,settings"
    assert lines[1].startswith('model_b (6C3-128FC-10FC),2770712,0.30000000000000004,1e-07,true,0.25;0.3333333333333333,')


def _rewrite(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


def test_reader_names_a_missing_or_renamed_column(tmp_path, toy_table):
    path = write_table(TOY_ROWS, tmp_path / "toy.csv", "toy")
    _rewrite(path, "name,count,share", "name,count,share_percent")
    with pytest.raises(TableError) as error:
        read_table(path, "toy")
    message = str(error.value)
    assert str(path) in message and "line 1" in message and "missing ['share']" in message
    assert "unexpected ['share_percent']" in message and "python make_toy.py --out OUT" in message
    _rewrite(path, "name,count,share_percent,", "name,count,")
    with pytest.raises(TableError, match=r"missing \['share'\], unexpected \[\]"):
        read_table(path, "toy")


def test_reader_refuses_percentages_and_names_every_bad_line(tmp_path, toy_table):
    rows = TOY_ROWS + [{**TOY_ROWS[1], "name": "third", "share": 0.5}]
    path = write_table(rows, tmp_path / "toy.csv", "toy")
    _rewrite(path, ",0.30000000000000004,", ",30.00 %,")     # line 2: a display value
    _rewrite(path, "third,-3,0.5,", "third,-3,50.0,")         # line 4: a percentage without its sign
    with pytest.raises(TableError) as error:
        read_table(path, "toy")
    message = str(error.value)
    assert str(path) in message
    assert "line 2, column share (float, fraction): '30.00 %' is not a number (a percentage? write the fraction)" \
        in message
    assert "line 4, column share (float, fraction): 50.0 is outside [0, 1]" in message
    _rewrite(path, "third,-3,50.0,", "third,1,000,0.5,")      # "1,000": one cell too many
    with pytest.raises(TableError, match=r"line 4: 8 cells, the header has 7"):
        read_table(path, "toy")


def test_reader_names_a_damaged_line(tmp_path, toy_table):
    path = write_table(TOY_ROWS * 3, tmp_path / "toy.csv", "toy")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:30] + "\n" + "".join(lines[4:6]) + lines[6][:5])
    with pytest.raises(TableError) as error:
        read_table(path, "toy")
    message = str(error.value)
    assert f"{path}: does not match table 'toy'" in message
    assert "line 4: 2 cells, the header has 7 (a damaged line?)" in message, "a line cut short in the middle"
    assert "line 7: 1 cell, the header has 7" in message, "the last line cut short (a killed writer)"
    assert "line 2" not in message and "line 5" not in message
    path.write_text(lines[0] + "model_b,12,0.5,,maybe,,\n")
    with pytest.raises(TableError, match=r"line 2, column flag \(bool, \): 'maybe' is not true or false"):
        read_table(path, "toy")
    path.write_text(lines[0] + "model_b,1.5,0.5,,true,,\n" + ",2,0.5,,true,,\n")
    with pytest.raises(TableError) as error:
        read_table(path, "toy")
    assert "line 2, column count (int, count): '1.5' is not an integer" in str(error.value)
    assert "line 3, column name (str, text): blank, but the column is required" in str(error.value)


def test_reader_checks_the_sidecar(tmp_path, toy_table):
    path = write_table(TOY_ROWS, tmp_path / "toy.csv", "toy")
    with pytest.raises(TableError, match=r"holds table 'toy', expected 'quantization'"):
        read_table(path, "quantization")
    sidecar = json.loads((tmp_path / "toy.json").read_text())
    (tmp_path / "toy.json").write_text(json.dumps({**sidecar, "version": 2}))
    with pytest.raises(TableError, match=r"schema version 2; this scnn reads version 3: rerun `python make_toy.py"):
        read_table(path)
    (tmp_path / "toy.json").unlink()
    with pytest.raises(TableError, match=r"no sidecar toy.json .* rerun `python make_toy.py --out OUT`"):
        read_table(path, "toy")
    with pytest.raises(FileNotFoundError, match="make_toy.py"):
        read_table(tmp_path / "missing.csv", "toy")


def test_first_version_files_fail_with_the_command_to_rerun(tmp_path):
    """benchmarks/quantization.py's first summary.csv (display headers, percentages, no sidecar) and
    experiments/compare.py's first compare.json (a list of rows where the sidecar now is)."""
    first = tmp_path / "summary.csv"
    first.write_text("model,bits (w/a/state),float %,PTQ %,QAT %,QAT - float (points),float32 bytes,quantised bytes,"
                     "integer ref. same prediction %,integer ref. same spike counts %,QAT s\n"
                     "B_T10,8/8/8,99.67,99.33,99.67,0.0,2770712,692678,100.0,100.0,61.2\n")
    with pytest.raises(TableError, match=r"summary.csv: no sidecar summary.json .* first version .* rerun "
                                         r"`python benchmarks/quantization.py --checkpoint NAME=PATH"):
        read_table(first, "quantization")
    (tmp_path / "compare.csv").write_text("architecture,T,accuracy\nmodel_b (6C3-128FC-10FC),10,99.67 %\n")
    (tmp_path / "compare.json").write_text(json.dumps([{"architecture": "model_b", "T": 10}]))
    with pytest.raises(TableError, match=r"compare.json: not a results table sidecar .* rerun "
                                         r"`python experiments/compare.py"):
        read_table(tmp_path / "compare.csv", "compare")


def test_writer_refuses_rows_that_would_not_read_back(tmp_path, toy_table):
    bad = [{**TOY_ROWS[0], "share": "99.7 %"}, {**TOY_ROWS[1], "count": None, "extra": 1},
           {**TOY_ROWS[1], "seconds": float("nan"), "flag": 1}]
    with pytest.raises(TableError) as error:
        write_table(bad, tmp_path / "toy.csv", "toy")
    message = str(error.value)
    for expected in ["row 0, column share (float, fraction): '99.7 %' is not a number",
                     "row 1: ['extra'] not column(s) of table 'toy'",
                     "row 1, column count (int, count): blank, but the column is required",
                     "row 2, column seconds (float, s): nan is not finite",
                     "row 2, column flag (bool, ): 1 is not true or false"]:
        assert expected in message
    assert not (tmp_path / "toy.csv").exists() and not (tmp_path / "toy.json").exists(), "nothing half written"
    with pytest.raises(ValueError, match=r"\.csv"):
        write_table(TOY_ROWS, tmp_path / "toy.txt", "toy")


def test_markdown_is_for_people(toy_table):
    table = markdown_table(TOY_ROWS, "toy", ["name", "count", "share", "seconds"], labels={"count": "n"})
    assert table.splitlines()[0] == "| name | n | share (%) | seconds |"
    assert table.splitlines()[2] == "| model_b (6C3-128FC-10FC) | 2,770,712 | 30.00 % | 0.000 |"
    assert table.splitlines()[3].endswith("| -3 | 100.00 % | – |")
    with pytest.raises(ValueError, match="not column"):
        markdown_table(TOY_ROWS, "toy", ["T"])


def test_the_schema_imports_without_matplotlib():
    code = "import sys, scnn.result_tables, scnn.viz.tables; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_docs_list_every_table_and_column():
    docs = (REPO / "docs" / "results_formats.md").read_text()
    for name in TABLES:
        assert schema_markdown(name) in docs, f"docs/results_formats.md: the section of table {name!r} is stale"
    assert "results_schema.md" in docs


# --------------------------------------------------------------------------- Profile.row()


def test_profile_row_is_the_flat_profile():
    torch.manual_seed(0)
    model = create_model("model_b", num_steps=3)
    profile = profile_model(model, torch.randn(6, 1, 32, 32), batch_size=4)
    row = profile.row()
    assert list(row) == [column.name for column in PROFILE_COLUMNS]
    check_rows([row], Table("profile_row", 1, PROFILE_COLUMNS, "", ""))  # types and units as documented
    conv, fc = 30 * 30 * 6 * 9, 6 * 30 * 30 * 128 + 128 * 10
    assert (row["num_steps"], row["num_samples"]) == (3, 6)
    assert row["dense_macs"] == conv + 3 * fc and row["dense_macs_per_step"] == 3 * (conv + fc)
    assert row["effective_macs"] == conv, "real-valued input: only the first layer multiplies"
    assert row["synops"] == row["effective_macs"] + row["effective_acs"] and row["effective_acs"] > 0
    assert row["dense_synops"] == profile.synaptic_operations["dense"]
    assert row["activation_sparsity"] == profile.activation_sparsity["overall"]
    assert row["energy_float32_nj"] == pytest.approx(
        (conv * ENERGY_45NM_PJ["float32_mac"] + row["effective_acs"] * ENERGY_45NM_PJ["float32_add"]) / 1000)
    assert row["dense_energy_int8_nj"] == pytest.approx(row["dense_macs"] * ENERGY_45NM_PJ["int8_mac"] / 1000)
    assert row["membrane_updates"] == 3 * (6 * 30 * 30 + 128 + 10)
    assert (row["footprint_float32_bytes"], row["footprint_int8_bytes"]) == (
        profile.footprint_bytes["float32"], profile.footprint_bytes["int8"])
    assert row["parameters"] == profile.parameters == 6 * 9 + 6 + 6 * 30 * 30 * 128 + 128 + 128 * 10 + 10


def test_training_results_and_tables_share_the_profile_row(tiny_snn_run):
    results = json.loads((tiny_snn_run / "results.json").read_text())
    cost = results["cost"]
    assert list(cost) == [column.name for column in PROFILE_COLUMNS]
    # The keys notebooks and sweeps read stay, equal to the row's.
    assert results["activation_sparsity"] == cost["activation_sparsity"]
    assert results["dense_macs_per_sample"] == cost["dense_macs"]
    assert results["effective_acs_per_sample"] == cost["effective_acs"]
    assert results["effective_macs_per_sample"] == cost["effective_macs"]
    assert cost["num_samples"] == results["split_sizes"]["test"]


def test_compare_table_holds_the_profile_row(tiny_compare_csv, tiny_snn_run):
    loaded = load_table(tiny_compare_csv, "compare")
    snn = next(row for row in loaded.rows if row["model"] == "model_b")
    assert snn["run"] == str(tiny_snn_run) and snn["num_steps"] == 4 and snn["num_samples"] == 20
    assert snn["synops"] == snn["effective_macs"] + snn["effective_acs"]
    assert snn["accuracy"] == json.loads((tiny_snn_run / "results.json").read_text())["test_accuracy"]
    shown = (tiny_compare_csv.parent / "compare.md").read_text().splitlines()[0]
    assert "| T |" in shown and "| accuracy (%) |" in shown


# --------------------------------------------------------------------------- benchmarks write tables


def test_quantization_benchmark_records_folders_and_bits_as_data(tiny_quant_results, tiny_snn_run):
    loaded = load_table(tiny_quant_results / "summary.csv", "quantization")
    assert [(row["model"], row["run"], row["weight_bits"], row["act_bits"], row["state_bits"])
            for row in loaded.rows] == [("model_b", "model_b_w8a8s8", 8, 8, 8), ("model_b", "model_b_w4a8s8", 4, 8, 8)]
    for row in loaded.rows:
        results = json.loads((tiny_quant_results / row["run"] / "results.json").read_text())
        assert row == quantization_row(results, "model_b", row["run"])
        assert row["checkpoint"] == str(tiny_snn_run / "best.pt") and row["mode"] == "qat"
        assert 0 <= row["float_accuracy"] <= 1 and row["integer_prediction_agreement"] == 1.0
    assert loaded.metadata["epochs"] == 5


def test_quantization_benchmark_starts_every_run_from_a_config(tmp_path, tiny_quant_results, tiny_snn_run):
    """--config (the README table's quantize config) is the base of every run, flags over it; finished runs are
    reused, so only the table is rewritten here."""
    shutil.copytree(tiny_quant_results, tmp_path, dirs_exist_ok=True)
    config = REPO / "configs" / "quantize" / "fsdd_model_b_int8.yaml"
    _run_script(REPO / "benchmarks" / "quantization.py", "--config", config, "--checkpoint",
                f"model_b={tiny_snn_run / 'best.pt'}", "--bits", "8,8,8", "4,8,8", "--epochs", "1", "--out", tmp_path)
    loaded = load_table(tmp_path / "summary.csv", "quantization")
    assert [row["run"] for row in loaded.rows] == ["model_b_w8a8s8", "model_b_w4a8s8"]
    assert (loaded.metadata["epochs"], loaded.metadata["lr"], loaded.metadata["threads"]) == (1, 5e-4, 2)
    assert loaded.metadata["config"] == str(config)


def _run_script(*arguments) -> str:
    return subprocess.run([sys.executable, *map(str, arguments)], check=True, capture_output=True, text=True,
                          cwd=REPO).stdout


def test_accuracy_benchmark_table_from_finished_runs(tmp_path, tiny_snn_run):
    """Finished runs are reused (no data prepared, nothing trained): the table holds their results.json."""
    shutil.copytree(tiny_snn_run, tmp_path / "model_b-seed0")
    shutil.copytree(tiny_snn_run, tmp_path / "model_b-seed1")
    _run_script(REPO / "benchmarks" / "accuracy.py", "--models", "model_b", "--seeds", "0", "1",
                "--data-dir", tmp_path / "no-recordings-needed", "--out", tmp_path)
    results = json.loads((tiny_snn_run / "results.json").read_text())
    loaded = load_table(tmp_path / "summary.csv", "accuracy")
    assert [(row["model"], row["seed"], row["run"]) for row in loaded.rows] == [
        ("model_b", 0, "model_b-seed0"), ("model_b", 1, "model_b-seed1")]
    assert loaded.rows[0]["test_accuracy"] == results["test_accuracy"]
    assert loaded.rows[0]["parameters"] == results["num_params"] and loaded.rows[0]["epochs_run"] == 1
    assert loaded.metadata["epochs"] == 30 and "machine" in loaded.metadata
    assert f"{100 * results['test_accuracy']:.2f} ± 0.00 %" in (tmp_path / "summary.md").read_text()


def test_engine_benchmark_tables(tmp_path):
    _run_script(REPO / "benchmarks" / "bench_engine.py", "--quick", "--models", "model_b", "--repeats", "1",
                "--threads", "1", "--no-memory", "--no-epoch", "--out", tmp_path)
    loaded = load_table(tmp_path / "bench_engine.csv", "engine")
    (row,) = loaded.rows
    assert (row["model"], row["num_steps"], row["batch_size"]) == ("model_b", 10, 16)
    assert len(row["spike_density"]) == 3 and row["train_mem_ref_mib"] is None
    assert row["train_speedup"] > 0 and loaded.metadata["machine"]["threads"] == 1
    profile = [entry for entry in read_table(tmp_path / "bench_engine_profile.csv", "engine_profile")
               if (entry["model"], entry["num_steps"], entry["batch_size"], entry["phase"]) == ("model_b", 10, 16, "train")]
    assert len(profile) == 10 and sum(entry["share"] for entry in profile) <= 1.0
    assert not (tmp_path / "bench_engine_epochs.csv").exists(), "--no-epoch: no epoch table"


def test_feature_speed_benchmark_table(tmp_path, fsdd_dir):
    _run_script(REPO / "benchmarks" / "feature_speed.py", "--data-dir", fsdd_dir, "--max-files", "60",
                "--out", tmp_path)
    rows = read_table(tmp_path / "summary.csv", "feature_speed")
    assert [(row["files"], row["cached"]) for row in rows][-1] == (60, True)
    assert all(row["seconds"] > 0 and row["feature_preset"] == "default" for row in rows)
    assert [row["workers"] for row in rows if not row["cached"]][0] == 1


# --------------------------------------------------------------------------- every benchmark writes a registered table


def _benchmark(name: str):
    """benchmarks/NAME.py as a module (its functions, without running main)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_writes_a_registered_table():
    """Each script in benchmarks/ calls write_table and is the documented writer of at least one registered table;
    each table a script is documented to write is named in it; every table name handed to write_table is
    registered. (Before, c_streaming_size, recipe_costs and stream_cost wrote free-form JSON, and c_latency and
    cache_scale only printed.)"""
    import ast

    scripts = sorted((REPO / "benchmarks").glob("*.py"))
    assert len(scripts) >= 12
    for path in scripts:
        tree = ast.parse(path.read_text())
        constants = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                     and isinstance(node.value, str)}
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and getattr(node.func, "id", getattr(node.func, "attr", None)) == "write_table"]
        assert calls, f"{path.name} writes no results table (scnn.result_tables.write_table)"
        for call in calls:
            table = call.args[2] if len(call.args) > 2 else next(
                (keyword.value for keyword in call.keywords if keyword.arg == "table"), None)
            if isinstance(table, ast.Constant):
                assert table.value in TABLES, f"{path.name}: write_table(..., {table.value!r}) is not registered"
        documented = [name for name, table in TABLES.items() if f"benchmarks/{path.name} " in table.command + " "]
        assert documented, f"{path.name}: no registered table names it as its writer (Table.command)"
        for name in documented:
            assert name in constants, f"{path.name} is documented to write table {name!r} but never names it"


def test_recipe_costs_benchmark_table(tmp_path):
    """One tiny recipe of the 12-word protocol (its training-set size unknown: blank cells), one timed batch."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "gsc12_tiny.yaml").write_text(
        "model: {name: 4C3-16FC-12FC, num_steps: 1}\n"
        "data: {dataset: speech_commands_12, feature_overrides: {sample_rate: 16000, n_fft: 640, hop_length: 320, "
        "n_mels: 40, n_mfcc: 40, num_frames: 50, top_db: null}}\n"
        "train: {batch_size: 4, epochs: 1}\n")
    (configs / "fsdd_model_b.yaml").write_text("model: {name: model_b}\n")  # not a benchmark recipe: skipped
    _run_script(REPO / "benchmarks" / "recipe_costs.py", "--configs", configs, "--batches", "1", "--out", tmp_path)
    loaded = load_table(tmp_path / "recipe_costs.csv", "recipe_costs")
    (row,) = loaded.rows
    assert (row["recipe"], row["benchmark"], row["classes"], row["input_shape"]) == ("gsc12_tiny", "gsc12", 12,
                                                                                       [1, 40, 50])
    assert row["train_size"] is None and row["seconds_per_epoch"] is None and row["seconds_per_10k_samples"] > 0
    assert row["timed_samples"] == 4 and row["parameters"] > 0 and row["macs_per_sample"] > 0
    assert loaded.metadata["batches"] == 1 and loaded.metadata["train_sizes"]["gsc35"] == 84_843


def test_cache_scale_benchmark_table(tmp_path):
    _run_script(REPO / "benchmarks" / "cache_scale.py", "--files", "6", "--shard-size", "4", "--train-batches", "0",
                "--threads", "1", "--work", tmp_path / "work", "--out", tmp_path / "out")
    loaded = load_table(tmp_path / "out" / "cache_scale.csv", "cache_scale")
    (row,) = loaded.rows
    assert (row["files"], row["shard_size"], row["shards"], row["feature_shape"]) == (6, 4, 2, [40, 50])
    assert row["train_s_per_10k"] is None, "--train-batches 0: not measured"
    assert row["build_files_per_s"] > 0 and row["cache_mb"] >= 0
    assert loaded.metadata["work"] == str(tmp_path / "work")


def test_c_streaming_size_rows_through_the_schema(tmp_path):
    """The writing function of benchmarks/c_streaming_size.py (measuring needs arm-none-eabi-gcc): lists stay lists,
    the harness's sizes go to the sidecar, qemu's check is blank unless run."""
    bench = _benchmark("c_streaming_size")
    results = [{"preset": preset, "hidden": [128, 128], "input_shape": [20, 64],
                "neurons": ["alif", "alif", "none"], "weight_bytes": 61_000,
                "library": {"text": 70_000, "data": 8, "bss": 0}, "flash_bytes": 70_008, "state_bytes": 2_000,
                "ram_bytes": 3_280, "harness_m4": {"text": 80_000, "data": 100, "bss": 2_000},
                "fits_1MiB_flash_256KiB_ram": True, **extra}
               for preset, extra in (("streaming", {"qemu_bit_exact": True}), ("streaming_rleaky", {}))]
    bench.write_results(results, tmp_path, ["--out", str(tmp_path)])
    loaded = load_table(tmp_path / "c_streaming_size.csv", "c_streaming_size")
    assert [row["preset"] for row in loaded.rows] == ["streaming", "streaming_rleaky"]
    assert loaded.rows[0]["hidden"] == [128, 128] and loaded.rows[0]["neurons"] == "alif;alif;none"
    assert loaded.rows[0]["flash_bytes"] == loaded.rows[0]["text_bytes"] + loaded.rows[0]["data_bytes"]
    assert [row["qemu_bit_exact"] for row in loaded.rows] == [True, None]
    assert loaded.metadata["harness_m4"]["streaming"]["text"] == 80_000


def test_c_latency_rows_through_the_schema(tmp_path):
    """benchmarks/c_latency.py's row of scnn.quant.latency.measure_latency's result (timed in test_export_c)."""
    bench = _benchmark("c_latency")
    latency = {"c": 0.2, "c_O2": 0.25, "numpy_reference": 3.0, "numpy_reference_batched": 0.5, "torch_float": 1.0,
               "torch_brevitas_twin": 4.0}
    result = {"checkpoint": "runs/model_b/best.pt", "model": "6C3-128FC-10FC", "num_steps": 10, "samples": 6,
              "repeats": 1, "c_passes": 50, "c_bit_exact_with_numpy": True, "test_accuracy_integer": 5 / 6,
              "latency_ms": latency, "c_state_bytes": 100, "c_weight_bytes": 693_110,
              "c_speedup_over_numpy": 15.0, "c_O2_speedup_over_numpy": 12.0}
    row = bench.table_row(result)
    assert row["m4_flash_bytes"] is None, "no arm-none-eabi toolchain: blank"
    write_table([row, bench.table_row({**result, "cortex_m4": {"flash_bytes": 696_566, "ram_bytes": 9_000,
                                                                "fits_1MiB_flash_256KiB_ram": True}})],
                tmp_path / "c_latency.csv", "c_latency")
    rows = read_table(tmp_path / "c_latency.csv", "c_latency")
    assert rows[0]["c_ms"] == 0.2 and rows[0]["c_o2_ms"] == 0.25 and rows[0]["test_accuracy_integer"] == 5 / 6
    assert (rows[1]["m4_flash_bytes"], rows[1]["m4_fits_1mib_flash_256kib_ram"]) == (696_566, True)


def test_stream_cost_rows_through_the_schema(tmp_path):
    """benchmarks/stream_cost.py's row of its nested result (the script runs in test_streaming): the integer and
    baseline columns are blank unless measured."""
    bench = _benchmark("stream_cost")
    result = {"checkpoint": "runs/streaming/best.pt", "samples": 3, "repeats": 1, "machine": "x86_64, 1 torch thread",
              "frame_ms": 16.0, "ms_per_frame": {"front_end": 0.05, "numpy_frame_runner_total": 0.3,
                                                 "torch_step_total": 0.9},
              "real_time_factor": {"numpy_frame_runner": 0.3 / 16, "torch_step": 0.9 / 16},
              "synops_per_sample": 1.5e6, "seconds_of_audio_per_sample": 1.024,
              "synops_per_second_of_audio": 1.5e6 / 1.024, "dense_macs_per_second_of_audio": 2e7,
              "parameters": 150_634}
    plain = bench.table_row(result)
    assert plain["integer_c_ms_per_frame"] is None and plain["baseline_checkpoint"] is None
    full = bench.table_row({
        **result, "ms_per_frame_integer_from_codes": {"numpy_integer_streamer": 0.2, "c_O3": 0.01,
                                                      "c_bit_exact_with_numpy": True},
        "real_time_factor": {**result["real_time_factor"], "integer_numpy_integer_streamer": 0.2 / 16,
                             "integer_c_O3": 0.01 / 16},
        "baseline": {"checkpoint": "runs/model_b/best.pt", "synops_per_inference": 3e6,
                     "dense_macs_per_inference": 2_770_000, "parameters": 692_678}})
    write_table([plain, full], tmp_path / "summary.csv", "stream_cost")
    rows = read_table(tmp_path / "summary.csv", "stream_cost")
    assert rows[0]["numpy_ms_per_frame"] == 0.3 and rows[0]["integer_c_bit_exact"] is None
    assert (rows[1]["integer_c_ms_per_frame"], rows[1]["integer_c_bit_exact"]) == (0.01, True)
    assert rows[1]["integer_c_real_time_factor"] == 0.01 / 16 and rows[1]["baseline_parameters"] == 692_678


def test_faults_rows_through_the_schema(tmp_path):
    bench = _benchmark("faults")
    rows = [{"fault": "kill during an epoch", "status": "handled", "reason": "resumed from last.pt", "seconds": 12.5},
            {"fault": "read-only --out", "status": "refused", "reason": "-", "seconds": 0.4}]
    bench.write_faults_table(rows, tmp_path, ["--only", "kill"])
    loaded = load_table(tmp_path / "faults.csv", "faults")
    assert loaded.rows == rows and loaded.metadata["argv"] == ["--only", "kill"]
