"""Figures: every plotting function writes a PNG; spikes and membranes come from a real forward pass;
SSM eigenvalues lie inside the unit circle; quantisation results read the same from their folders and
from the benchmark's table (summary.csv, through scnn.result_tables); experiments/plot.py runs end to end on
small saved results."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scnn.viz.dynamics import layer_labels, record_sample
from scnn.result_tables import TableError
from scnn.viz.figures import quantization_results, quantization_rows
from scnn.metrics import firing_rates, record_activity
from scnn.models import create_model
from scnn.viz.plots import (_run_name, model_family, plot_confusion_matrix, plot_cost_accuracy, plot_firing_rates,
                           plot_membrane_traces, plot_pareto, plot_qat_curves, plot_quantization, plot_spike_raster,
                           plot_ssm_eigenvalues, plot_sweep, plot_sweeps_sparsity_accuracy,
                           plot_training_curves)
from scnn.models.ssm import DiagonalSSM, discrete_eigenvalues
from scnn.search.sweep import summarize_sweep
from scnn.search.tune import load_trials, pareto_front, sparsity_front

REPO = Path(__file__).resolve().parents[1]


def is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curves_and_confusion_matrix(tmp_path):
    history = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_accuracy": 0.3 * e,
                "val_accuracy": 0.25 * e} for e in (1, 2, 3)]
    assert is_png(plot_training_curves(history, tmp_path / "curves.png", title="hand-made"))
    assert is_png(plot_training_curves(history[:1], tmp_path / "one_epoch.png"))
    confusion = np.diag([3, 2, 4]) + 1
    assert is_png(plot_confusion_matrix(confusion, ["a", "b", "c"], tmp_path / "confusion.png"))


def test_sweep_and_pareto_figures(tmp_path):
    rows = [{"param": "beta", "value": value, "seed": seed, "val_accuracy": accuracy, "test_accuracy": accuracy,
             "activation_sparsity": sparsity, "effective_acs_per_sample": 1e5 * (1 + seed)}
            for value, seed, accuracy, sparsity in [(0.3, 0, 0.9, 0.95), (0.3, 1, 0.88, 0.94),
                                                    (0.7, 0, 0.97, 0.9), (0.7, 1, 0.95, 0.91)]]
    assert is_png(plot_sweep(summarize_sweep(rows), "beta", tmp_path / "sweep.png"))
    other = [{**row, "test_accuracy": row["test_accuracy"] - 0.02, "activation_sparsity": row["activation_sparsity"] + 0.02}
             for row in rows]
    assert is_png(plot_sweeps_sparsity_accuracy({"model A": summarize_sweep(rows), "model B": summarize_sweep(other)},
                                                "beta", tmp_path / "both.png"))
    from scnn.search.sweep import _write_sweep

    for name, sweep_rows in (("sweep_a", rows), ("sweep_b", other)):
        _write_sweep(tmp_path / name / "sweep.csv", sweep_rows)
    from scnn.viz.figures import sweeps_comparison_figures

    written = sweeps_comparison_figures([tmp_path / "sweep_a" / "sweep.csv", tmp_path / "sweep_b" / "sweep.csv"],
                                        tmp_path / "figures")
    assert [p.name for p in written] == ["sweeps_beta_accuracy_vs_sparsity.png"] and is_png(written[0])
    points = [{**row, "synops": row["effective_acs_per_sample"]} for row in rows]
    front = sparsity_front(points)
    assert [p["activation_sparsity"] for p in front] == [0.9, 0.91, 0.95], "0.94 sparsity at 88 % is dominated"
    assert is_png(plot_pareto(points, front, tmp_path / "sparsity.png", x="activation_sparsity", y="test_accuracy",
                              annotate="value"))
    assert is_png(plot_pareto(points, pareto_front(points), tmp_path / "synops.png"))


def test_sweeps_over_strings_and_lists_are_drawn_with_their_values_as_ticks(tmp_path):
    """A surrogate or a layer list cannot be an x coordinate: one tick per value, labelled as written."""
    for param, values in (("surrogate", ["atan", "fast_sigmoid"]), ("downsample", [[1, 2, 1, 1], [1, 1, 1, 1]])):
        rows = [{"param": param, "value": value, "seed": 0, "val_accuracy": 0.9, "test_accuracy": 0.9 - 0.01 * index,
                 "activation_sparsity": 0.9, "effective_acs_per_sample": 1e5} for index, value in enumerate(values)]
        summary = summarize_sweep(rows)
        path = plot_sweep(summary, param, tmp_path / f"{param}.png")
        assert is_png(path)
        assert is_png(plot_sweeps_sparsity_accuracy({"model B": summary}, param, tmp_path / f"{param}_both.png"))
    import matplotlib.pyplot as plt

    plt.close("all")


def spiking_sample():
    torch.manual_seed(0)
    model = create_model("model_a", num_steps=6, threshold=0.5)
    return model, 2 * torch.randn(1, 32, 32)


def test_one_sample_figures_from_a_forward_pass(tmp_path):
    model, x = spiking_sample()
    dynamics = record_sample(model, x)
    assert list(dynamics.spikes) == ["1: 6C3", "2: 16C3", "3: 128FC", "4: 64FC", "5: 10FC"]
    activity = record_activity(model, x.unsqueeze(0))  # the pass that measures sparsity
    for (label, spikes), layer in zip(dynamics.spikes.items(), activity):
        assert torch.equal(spikes, layer.activation_output[:, 0].flatten(1))
        membrane = dynamics.membranes[label]
        assert membrane.shape == spikes.shape and membrane.shape[0] == 6
        assert torch.equal(spikes, (membrane > dynamics.thresholds[label]).float()), "S[t] = H(U[t] - U_thr)"
        assert torch.allclose(dynamics.firing_rates[label], spikes.mean(0))
    assert 0 < sum(float(s.sum()) for s in dynamics.spikes.values()), "the sample makes the network spike"
    assert torch.allclose(dynamics.logits, model(x.unsqueeze(0)).logits[0])
    assert [rate.shape for rate in firing_rates(activity).values()] == [
        rate.shape for rate in dynamics.firing_rates.values()]

    assert is_png(plot_spike_raster(dynamics.spikes, tmp_path / "raster.png"))
    assert is_png(plot_firing_rates(dynamics.firing_rates, tmp_path / "rates.png", num_steps=6))
    assert is_png(plot_membrane_traces(dynamics.membranes, tmp_path / "traces.png", dynamics.thresholds,
                                       dynamics.spikes, class_names=[str(d) for d in range(10)]))


def test_layer_labels_and_non_spiking_models():
    assert layer_labels(create_model("control_cnn")) == ["1: 6C3-P2", "2: 16C3-P2", "3: 128FC", "4: 64FC", "5: 10FC"]
    assert layer_labels(create_model("model_b", num_classes=4)) == ["1: 6C3", "2: 128FC", "3: 4FC"]
    with pytest.raises(ValueError, match="spiking"):
        record_sample(create_model("control_cnn"), torch.zeros(1, 32, 32))


def test_cost_accuracy_scatter(tmp_path):
    rows = [{"architecture": "control_cnn (6C3-P2-16C3-P2-128FC-64FC-10FC)", "num_steps": 1, "accuracy": 0.987,
             "effective_macs": 2.1e5, "effective_acs": 0, "energy_float32_nj": 982.0},
            {"architecture": "model_b (6C3-128FC-10FC)", "num_steps": 10, "accuracy": 0.996, "effective_macs": 4.9e4,
             "effective_acs": 7.3e5, "energy_float32_nj": 879.0},
            {"architecture": "ssm_tiny (SSM, H=24, P=24)", "num_steps": 1, "accuracy": 1.0, "effective_macs": 1.5e5,
             "effective_acs": 0, "energy_float32_nj": 687.0}]
    assert [model_family(row) for row in rows] == ["CNN", "SNN", "SSM"]
    assert [_run_name(row) for row in rows] == ["control_cnn", "model_b, T=10", "ssm_tiny"]
    assert is_png(plot_cost_accuracy(rows, tmp_path / "cost.png"))


def test_discretised_eigenvalues_of_a_stable_ssm_lie_inside_the_unit_circle(tmp_path):
    torch.manual_seed(0)
    model = create_model("ssm_tiny")
    eigenvalues = discrete_eigenvalues(model)
    assert len(eigenvalues) == 3 and all(values.shape == (24,) for values in eigenvalues)
    assert all(bool((values.abs() < 1).all()) for values in eigenvalues)

    # Any stable continuous system (Re Lambda < 0), however large the step, stays inside after ZOH; the
    # conjugate completion gives the eigenvalues of the real state matrix exp(A Delta).
    layer = DiagonalSSM(features=3, state_size=8)
    with torch.no_grad():
        layer.log_neg_real.copy_(torch.tensor([-6.0, -1.0, 0.0, 2.0]))  # Re Lambda from -0.0025 to -7.4
        layer.imag.copy_(torch.tensor([0.0, 3.0, -40.0, 100.0]))
        layer.log_dt.copy_(torch.tensor([0.0, 2.0, -3.0, 1.0]))
    values = discrete_eigenvalues(layer)[0]
    assert bool((values.abs() < 1).all()) and torch.allclose(values[4:], values[:4].conj())
    real_part = -torch.exp(layer.log_neg_real.detach()).double()
    step = torch.exp(layer.log_dt.detach()).double()
    for mode in range(4):
        a, b = float(real_part[mode]), float(layer.imag[mode].detach())
        block = torch.tensor([[a, -b], [b, a]], dtype=torch.float64) * step[mode]
        expected = torch.linalg.eigvals(torch.linalg.matrix_exp(block))
        got = torch.stack([values[mode], values[mode + 4]]).to(torch.complex128)
        assert torch.allclose(torch.sort(expected.imag).values, torch.sort(got.imag).values, atol=1e-5)
        assert torch.allclose(expected.real, got.real, atol=1e-5)
    assert is_png(plot_ssm_eigenvalues(eigenvalues, tmp_path / "eigenvalues.png"))


def test_search_trials_load_from_a_folder_json_or_csv(tmp_path):
    trials = [{"beta": 0.5, "threshold": 1.0, "num_steps": 4, "val_accuracy": 0.9, "activation_sparsity": 0.9,
               "synops": 3e5, "epoch": 2, "error": ""},
              {"beta": 0.2, "threshold": 3.0, "num_steps": 2, "val_accuracy": None, "activation_sparsity": None,
               "synops": None, "epoch": None, "error": "failed"}]
    (tmp_path / "trials.json").write_text(json.dumps(trials))
    assert load_trials(tmp_path) == trials[:1] and load_trials(tmp_path / "trials.json") == trials[:1]
    (tmp_path / "ray.csv").write_text("config/beta,config/threshold,val_accuracy,activation_sparsity,synops\n"
                                      "0.5,1.0,0.9,0.9,300000\n0.2,3.0,,,\n")
    assert load_trials(tmp_path / "ray.csv") == [{"beta": 0.5, "threshold": 1.0, "val_accuracy": 0.9,
                                                  "activation_sparsity": 0.9, "synops": 3e5}]
    with pytest.raises(FileNotFoundError, match="tune_neuron"):
        load_trials(tmp_path / "missing")


def test_plot_script_regenerates_every_figure(tmp_path, tiny_snn_run, tiny_ssm_run, tiny_sweep_csv,
                                              tiny_tune_results, tiny_compare_csv):
    command = [sys.executable, str(REPO / "experiments" / "plot.py"), "--run", str(tiny_snn_run),
               "--run", str(tiny_ssm_run), "--sweep", str(tiny_sweep_csv), "--tune", str(tiny_tune_results),
               "--compare", str(tiny_compare_csv), "--sample", "3", "--out", str(tmp_path)]
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    expected = [f"model_b_{name}.png" for name in ("training_curves", "confusion_matrix", "spike_raster",
                                                  "firing_rates", "membrane_traces")]
    expected += [f"ssm_tiny_{name}.png" for name in ("training_curves", "confusion_matrix", "ssm_eigenvalues")]
    sweep, tune = tiny_sweep_csv.parent.name, tiny_tune_results.name
    expected += [f"{sweep}_sweep.png", f"{sweep}_accuracy_vs_sparsity.png", f"{tune}_accuracy_vs_synops.png",
                 f"{tune}_accuracy_vs_sparsity.png", "cost_accuracy.png"]
    assert sorted(Path(line).name for line in printed) == sorted(expected)
    assert all(is_png(tmp_path / name) for name in expected)


def test_plot_script_says_what_is_missing(tmp_path, capsys):
    from scnn.cli import main as scnn

    for argv, message in [([], "nothing to plot"), (["--run", str(tmp_path)], "not a training run"),
                          (["--sweep", str(tmp_path / "sweep.csv")], "sweep_param.py"),
                          (["--quant", str(tmp_path)], "quantize.py")]:
        with pytest.raises(SystemExit) as stopped:
            scnn(["plot", *argv, "--out", str(tmp_path)])
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and message in error, (argv, error)
        assert len(error.strip().splitlines()) == 1, error  # one line, no traceback
    # The first version's compare table (display values, no sidecar) is refused with the command to rerun.
    (tmp_path / "compare.csv").write_text("architecture,T,accuracy\nmodel_b (6C3-128FC-10FC),10,99.67 %\n")
    with pytest.raises(SystemExit):
        scnn(["plot", "--compare", str(tmp_path / "compare.csv"), "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert re.search(r"compare.csv: no sidecar compare.json .* rerun `python experiments/compare.py RUN... --out OUT` "
                     r"or `python experiments/profile_cost.py", error), error


# --------------------------------------------------------------------------- quantisation


def test_quantization_figure(tmp_path):
    rows = [{"model": model, "weight_bits": bits, "act_bits": 8, "state_bits": 8, "float_accuracy": 0.99,
             "ptq_accuracy": ptq, "qat_accuracy": qat, "float_bytes": 2770712, "quantized_bytes": 2770712 * bits // 32}
            for model in ("model_b, T=10", "model_b, T=1")
            for bits, ptq, qat in [(8, 0.99, 0.99), (4, 0.93, 0.985), (2, 0.3, None)]]  # 2 bits: PTQ only
    assert is_png(plot_quantization(rows, tmp_path / "quantization.png"))
    rows.append({**rows[0], "act_bits": 4, "float_bytes": None, "float_accuracy": None})  # a series of its own
    assert is_png(plot_quantization(rows, tmp_path / "mixed.png", title="mixed activation bits"))
    history = [{"epoch": 1, "val_accuracy": 0.9}, {"epoch": 2, "val_accuracy": 0.95}]
    assert is_png(plot_qat_curves([{"label": "w4", "history": history, "ptq_accuracy": 0.8}], tmp_path / "qat.png"))


def test_quantization_rows_from_result_folders_or_the_summary(tmp_path, tiny_quant_results, tiny_snn_run):
    folders = quantization_rows(tiny_quant_results)
    summary = quantization_rows(tiny_quant_results / "summary.csv")
    assert [(r["model"], r["weight_bits"]) for r in folders] == [("model_b", 4), ("model_b", 8)]
    assert [(r["model"], r["weight_bits"]) for r in summary] == [("model_b", 8), ("model_b", 4)]
    for row in folders:
        results = json.loads((Path(row["folder"]) / "results.json").read_text())
        assert row["qat_accuracy"] == results["quantized"]["test_accuracy"]
        assert row["quantized_bytes"] < row["float_bytes"] == results["float"]["size_bytes"]
        assert row["integer_prediction_agreement"] == 1.0, "the integer reference reproduces the model"
        same = next(r for r in summary if r["weight_bits"] == row["weight_bits"])
        for key in ("float_accuracy", "ptq_accuracy", "qat_accuracy", "integer_spike_count_agreement"):
            assert same[key] == pytest.approx(row[key]), key
        assert (same["float_bytes"], same["quantized_bytes"]) == (row["float_bytes"], row["quantized_bytes"])
        assert same["integer_logit_agreement"] == row["integer_logit_agreement"], "recorded in the table"
        assert same["onnx_prediction_agreement"] == row["onnx_prediction_agreement"] is not None
        assert Path(same["folder"]).resolve() == Path(row["folder"]).resolve(), "the table names its run folder"
        assert same == {**row, "folder": same["folder"], "run": same["run"]}, "the table and the folder agree"
    assert [len(folder_results["history"]) for _, folder_results in quantization_results(tiny_quant_results)] == [1, 1]

    # A folder not named as the benchmark names them: the model is read from the float checkpoint. A PTQ-only
    # run at the same bits fills in nothing the QAT run has.
    results = json.loads((tiny_quant_results / "model_b_w8a8s8" / "results.json").read_text())
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "results.json").write_text(json.dumps(results))
    ptq_only = {**results, "config": {**results["config"], "mode": "ptq"}, "history": [], "integer_reference": {},
                "quantized": {**results["quantized"], "test_accuracy": 0.0}}
    (tmp_path / "ptq8").mkdir()
    (tmp_path / "ptq8" / "results.json").write_text(json.dumps(ptq_only))
    (row,) = quantization_rows([tmp_path / "ptq8", tmp_path / "int8"])
    assert row["model"] == "model_b, T=4" and row["folder"] == str(tmp_path / "int8")
    assert row["qat_accuracy"] == results["quantized"]["test_accuracy"] and row["integer_prediction_agreement"] == 1.0
    with pytest.raises(FileNotFoundError, match="quantize.py"):
        quantization_rows(tmp_path / "missing")

    # The run folders and bits are data: a renamed folder is still found and named through the table.
    moved = tmp_path / "moved"
    shutil.copytree(tiny_quant_results, moved)
    (moved / "model_b_w4a8s8").rename(moved / "four_bits")
    (moved / "summary.csv").write_text((moved / "summary.csv").read_text().replace("model_b_w4a8s8", "four_bits"))
    assert [(r["model"], r["weight_bits"]) for r in quantization_rows(moved)] == [("model_b", 4), ("model_b", 8)]
    assert [(f.name, r["config"]["quant"]["weight_bits"]) for f, r in quantization_results(moved / "summary.csv")] \
        == [("model_b_w8a8s8", 8), ("four_bits", 4)]

    # The first version's summary.csv (display headers, percentages, no sidecar): refused, with the command.
    (moved / "summary.json").unlink()
    (moved / "summary.csv").write_text("model,bits (w/a/state),float %,PTQ %,QAT %\nmodel_b,8/8/8,99.67,99.33,99.67\n")
    with pytest.raises(TableError, match=r"no sidecar summary.json .* rerun `python benchmarks/quantization.py"):
        quantization_rows(moved / "summary.csv")
    with pytest.raises(TableError, match="rerun `python benchmarks/quantization.py"):
        quantization_rows(moved)  # the folders' names come from the table beside them


def test_plot_script_draws_the_quantization_figures(tmp_path, tiny_quant_results):
    command = [sys.executable, str(REPO / "experiments" / "plot.py"), "--quant",
               str(tiny_quant_results / "summary.csv"), "--quant", str(tiny_quant_results / "model_b_w4a8s8"),
               "--out", str(tmp_path)]
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    assert sorted(Path(line).name for line in printed) == ["qat_curves.png", "quantization.png"]
    assert len(quantization_results([tiny_quant_results / "summary.csv", tiny_quant_results / "model_b_w4a8s8"])) == 2
    assert all(is_png(tmp_path / name) for name in ("qat_curves.png", "quantization.png"))
