"""Exports of a quantised model by name, each checked against the model it came from.

An export is one function ``(quantized, test_x, predictions, out_dir) -> dict``: it writes its
files into ``out_dir`` and returns its entry of ``results.json`` (file names and how well the
exported model agrees with the fake-quantised one on the test features ``test_x``; ``predictions``
are that model's own test predictions, computed once for all exports). A new export is one
registered function::

    @register_export("my_format")
    def my_format(quantized, test_x, predictions, out_dir) -> dict: ...

and ``QuantRunConfig(exports=[..., "my_format"])`` / ``scnn quantize --export my_format`` runs it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from scnn.models.outputs import LogitsOnly
from scnn.quant.integer import export_integer, make_test_vectors, quantize_input, run_integer, save_integer
from scnn.quant.twin import QuantSpecNet
from scnn.registry import Registry


def integer_agreement(quantized: QuantSpecNet, x: torch.Tensor, batch_size: int = 100) -> dict:
    """Run the integer reference beside the fake-quantised model on ``x``.

    Returns the fraction of identical predictions, of samples whose spike counts are
    identical in every layer, and of identical logits (integer logits x unit == float logits).
    """
    description, arrays = export_integer(quantized)
    same_prediction = same_spikes = same_logits = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        with torch.no_grad():
            output = quantized(xb, record=True)
        result = run_integer(description, arrays, quantize_input(description, xb.cpu().numpy()))
        same_prediction += int((result.predictions == output.logits.argmax(1).cpu().numpy()).sum())
        counts = [s.reshape(s.shape[0], s.shape[1], -1).sum((0, 2)).cpu().numpy() for s in output.layer_spikes]
        equal = np.ones(len(xb), dtype=bool)
        for mine, theirs in zip(counts, result.spike_counts):
            equal &= mine.astype(np.int64) == theirs
        same_spikes += int(equal.sum())
        same_logits += int((result.real_logits == output.logits.cpu().double().numpy()).all(1).sum())
    n = max(len(x), 1)
    return {"prediction_agreement": same_prediction / n, "spike_count_agreement": same_spikes / n,
            "logit_agreement": same_logits / n, "samples": len(x)}



def export_onnx(quantized: QuantSpecNet, example: torch.Tensor, path: str | Path) -> Path:
    """Brevitas QCDQ ONNX export (QuantizeLinear / Clip / DequantizeLinear around float ops; the
    LIF loop is unrolled over T). Uses the TorchScript exporter: Brevitas 0.13's dynamo path
    does not support quantised biases."""
    from brevitas.export import export_onnx_qcdq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quantized.eval()
    with torch.no_grad():
        export_onnx_qcdq(LogitsOnly(quantized).cpu(), args=example.cpu(), export_path=str(path), dynamo=False,
                         input_names=["features"], output_names=["logits"],
                         dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}})
    return path



def export_qonnx_model(quantized: QuantSpecNet, example: torch.Tensor, path: str | Path) -> Path:
    """Brevitas QONNX export (Quant nodes with bit widths and scales, FINN's input format)."""
    from brevitas.export import export_qonnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quantized.eval()
    with torch.no_grad():
        export_qonnx(LogitsOnly(quantized).cpu(), args=example.cpu(), export_path=str(path), dynamo=False)
    return path



def qonnx_predictions(path: str | Path, x: torch.Tensor) -> np.ndarray:
    """Predicted classes ``[B]`` of a QONNX file under qonnx's reference executor (batch as exported)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path)).transform(InferShapes())
    batch = model.get_tensor_shape(model.graph.input[0].name)[0]
    predictions = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch].cpu().numpy().astype(np.float32)
        if len(chunk) < batch:  # the QONNX graph has a fixed batch: pad, then drop the padding
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # qonnx prints every shape
            # it did not infer, and warns "Output shapes disagree after node ..." with a protobuf dump of the node
            # (5-13 lines, 8 per chunk) wherever a value's annotated shape is not the one it computes (the
            # unrolled LIF's Expand/Where). Known and harmless here: the predictions are compared with the
            # Brevitas model's, which is the check that counts. Only that warning, only from qonnx, is silenced.
            warnings.filterwarnings("ignore", message="Output shapes disagree", category=UserWarning,
                                    module=r"qonnx\.")
            logits = execute_onnx(model, {model.graph.input[0].name: chunk})[model.graph.output[0].name]
        predictions.append(logits.argmax(1)[:len(x) - start])
    return np.concatenate(predictions)



def onnx_predictions(path: str | Path, x: torch.Tensor) -> np.ndarray:
    """Predicted classes ``[B]`` of an exported ONNX model under onnxruntime."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the exporter leaves constants among the graph inputs
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x.cpu().numpy().astype(np.float32)})[0]
    return logits.argmax(1)


EXPORTS: Registry = Registry("export")
DEFAULT_EXPORTS = ("integer", "onnx", "qonnx")


def register_export(name: str) -> Callable:
    def register(export: Callable) -> Callable:
        EXPORTS[name] = export
        return export

    return register


def check_exports(names) -> None:
    for name in names:
        EXPORTS.lookup(name)


def run_exports(names, quantized, test_x: torch.Tensor, out_dir: str | Path) -> dict:
    """``{name: results entry}`` of each export in ``names``, in order."""
    check_exports(names)
    with torch.no_grad():
        predictions = quantized(test_x).logits.argmax(1).cpu().numpy()
    return {name: EXPORTS[name](quantized, test_x, predictions, Path(out_dir)) for name in names}


TEST_VECTOR_SAMPLES = 16  # test recordings written as test vectors beside every integer artefact


@register_export("integer")
def integer_export(quantized, test_x, predictions, out_dir: Path) -> dict:
    """``integer.npz`` + ``integer.json`` + ``integer.vectors.npz`` (docs/integer_format.md), with the numpy
    integer reference's agreement with the quantised model on every test recording (predictions, spike
    counts, logits). The front end and normaliser come from ``quantized.front_end`` (FeatureConfig,
    Normalizer), which :func:`scnn.quant.workflow.run_quantization` sets; without it they are null."""
    agreement = integer_agreement(quantized, test_x)
    feature_config, normalizer = getattr(quantized, "front_end", (None, None))
    description, arrays = export_integer(quantized, feature_config, normalizer)
    vectors = None
    if description["spiking"]:  # the first test recordings, as codes, with what the reference computes
        codes = quantize_input(description, test_x[:TEST_VECTOR_SAMPLES].cpu().numpy())
        vectors = make_test_vectors(description, arrays, codes)
    save_integer(description, arrays, out_dir / "integer", vectors=vectors)
    return agreement


@register_export("onnx")
def onnx_export(quantized, test_x, predictions, out_dir: Path) -> dict:
    """``model.onnx`` (QCDQ), run with onnxruntime on the whole test split."""

    path = export_onnx(quantized, test_x[:2], out_dir / "model.onnx")
    same = onnx_predictions(path, test_x) == predictions
    return {"path": path.name, "prediction_agreement": float(same.mean())}


@register_export("qonnx")
def qonnx_export(quantized, test_x, predictions, out_dir: Path) -> dict:
    """``model.qonnx.onnx`` (QONNX, FINN's input), run with qonnx's executor on 100 test recordings
    (a slow reference interpreter)."""

    path = export_qonnx_model(quantized, test_x[:50], out_dir / "model.qonnx.onnx")
    same = qonnx_predictions(path, test_x[:100]) == predictions[:100]
    return {"path": path.name, "prediction_agreement": float(same.mean()), "samples": len(same)}
