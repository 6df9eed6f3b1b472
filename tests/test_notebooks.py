"""Notebooks: committed without outputs, each run top to bottom (nbclient) on small inputs the tests make."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["sparsity_vs_accuracy", "training_dynamics", "snn_vs_ssm", "quantization"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean(name):
    """No outputs or execution counts; opens with a markdown cell giving the commands that make its inputs."""
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and "```bash" in "".join(first["source"])


@pytest.fixture
def notebook_inputs(request) -> dict:
    """Environment variables pointing a notebook at the session's small inputs (built only when needed)."""
    name = request.param
    if name == "sparsity_vs_accuracy":
        return {"SCNN_NB_SWEEP_CSV": request.getfixturevalue("tiny_sweep_csv"),
                "SCNN_NB_TUNE": request.getfixturevalue("tiny_tune_results")}
    if name == "training_dynamics":
        return {"SCNN_NB_RUN": request.getfixturevalue("tiny_snn_run"), "SCNN_NB_SAMPLE": "5"}
    if name == "quantization":  # the summary.csv: the notebook finds the run folders beside it
        return {"SCNN_NB_QUANT": request.getfixturevalue("tiny_quant_results") / "summary.csv"}
    return {"SCNN_NB_COMPARE_CSV": request.getfixturevalue("tiny_compare_csv"),
            "SCNN_NB_SSM_CHECKPOINT": request.getfixturevalue("tiny_ssm_run") / "best.pt"}


EXPECTED_FIGURES = {
    "sparsity_vs_accuracy": ["sweep.png", "sweep_accuracy_vs_sparsity.png", "tune_accuracy_vs_synops.png",
                             "tune_accuracy_vs_sparsity.png"],
    "training_dynamics": ["training_curves.png", "confusion_matrix.png", "spike_raster.png", "firing_rates.png",
                          "membrane_traces.png"],
    "snn_vs_ssm": ["cost_accuracy.png", "ssm_eigenvalues.png"],
    "quantization": ["quantization.png", "qat_curves.png"],
}


@pytest.mark.parametrize("notebook_inputs", NAMES, indirect=True, ids=NAMES)
def test_notebook_runs_top_to_bottom(notebook_inputs, request, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    name = request.node.callspec.id
    for key, value in {**notebook_inputs, "SCNN_NB_OUT": tmp_path}.items():
        monkeypatch.setenv(key, str(value))  # the kernel inherits this process's environment
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    for figure in EXPECTED_FIGURES[name]:
        assert (tmp_path / figure).stat().st_size > 1000, figure
    images = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if "image/png" in output.get("data", {})]
    assert len(images) == len(EXPECTED_FIGURES[name]), "every figure is shown in the notebook"
