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
