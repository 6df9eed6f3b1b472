"""Quantisation workflows: post-training quantisation (PTQ), quantisation-aware training (QAT)
from a float checkpoint or from scratch, export (integer artefact, ONNX), and the checks
that the exported models agree with the fake-quantised one.

:func:`run_quantization` is what ``experiments/quantize.py`` calls; it writes ``results.json``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scnn.data.prepare import DataConfig, PreparedData, checkpoint_data, prepare_data
from scnn.io import save_checkpoint, write_json
from scnn.models.outputs import LogitsOnly
from scnn.models.registry import count_parameters, create_model
from scnn.quant.config import QuantConfig
from scnn.quant.integer import export_integer, make_test_vectors, quantize_input, run_integer, save_integer
from scnn.quant.twin import QuantSpecNet, model_size_bytes, quantize, quantized_to_dict
from scnn.train.config import TrainConfig, resolve_device
from scnn.train.evaluate import evaluate, load_trained_model
from scnn.train.loop import FitState, fit, training_parts
from scnn.train.run import RESULTS_SCHEMA_VERSION, library_versions


TEST_VECTOR_SAMPLES = 16  # test recordings written as test vectors beside every integer artefact


@dataclass
class QuantRunConfig:
    """One quantisation run.

    checkpoint: float checkpoint (best.pt of train.py); None with from_scratch.
    mode: "ptq" (calibrate only), "qat" (PTQ, then fine-tune), "scratch" (QAT from random weights of ``model``).
    quant: bit widths and fixed-point choices (:class:`scnn.quant.QuantConfig`, every field of it).
    epochs, lr, batch_size: QAT; calibration_samples: training samples used to calibrate.
    train_per_class: keep only the first N training recordings per class (0: all), for quick runs.
    """

    checkpoint: str | None = None
    mode: str = "qat"
    model: str = "model_b"
    model_overrides: dict = field(default_factory=dict)
    quant: QuantConfig = field(default_factory=QuantConfig)
    epochs: int = 5
    lr: float = 5e-4
    batch_size: int = 32
    calibration_samples: int = 512
    train_per_class: int = 0
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    export: bool = True

    def __post_init__(self):
        if isinstance(self.quant, dict):
            self.quant = QuantConfig(**self.quant)
        if self.mode not in ("ptq", "qat", "scratch"):
            raise ValueError(f"mode must be ptq, qat or scratch, got {self.mode!r}")
        if self.mode != "scratch" and not self.checkpoint:
            raise ValueError(f"mode {self.mode!r} needs a float checkpoint (--checkpoint)")
        for name in ("epochs", "batch_size", "calibration_samples"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be at least {0 if name == 'epochs' else 1}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def fine_tune(quantized: QuantSpecNet, data: PreparedData, train_config: TrainConfig, progress: bool = True) -> list:
    """QAT: train the fake-quantised model with the one fit loop (:func:`scnn.train.loop.fit`) and keep
    the weights of the best validation epoch, the PTQ weights (epoch 0) included. Returns the history."""
    parts = training_parts(train_config, quantized, len(data.train[1]))
    baseline = evaluate(quantized, *data.val, num_classes=len(data.class_names), loss_fn=parts[2])
    state = FitState()
    state.consider({"epoch": 0, "val_accuracy": baseline["accuracy"], "val_loss": baseline["loss"]}, quantized)
    state = fit(quantized, data, train_config, parts, state, progress=progress, label="QAT epoch")
    quantized.load_state_dict(state.best["state"])
    quantized.eval()
    return state.history


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


def _load_float(config: QuantRunConfig, data_dir: str | None, progress: bool) -> tuple[nn.Module, PreparedData, dict]:
    """The float model and the data it was trained on (same split, features and normaliser)."""
    if config.mode == "scratch":
        data = prepare_data(DataConfig(data_dir=data_dir, train_per_class=config.train_per_class), progress=progress)
        torch.manual_seed(config.seed)
        model = create_model(config.model, input_shape=data.input_shape, num_classes=len(data.class_names),
                             **config.model_overrides)
        return model, data, {}
    model, checkpoint = load_trained_model(config.checkpoint)
    data = checkpoint_data(checkpoint, {"data_dir": data_dir, "train_per_class": config.train_per_class or None},
                           progress)
    return model, data, checkpoint


def run_quantization(config: QuantRunConfig, out_dir: str | Path, data_dir: str | None = None,
                     progress: bool = True) -> dict:
    """PTQ, QAT or QAT from scratch; evaluate float and quantised models on test; export; write results.json.

    out_dir receives ``results.json``, ``quantized.pt`` (rebuild with
    :func:`scnn.quant.quantized_from_dict`), ``integer.npz`` + ``integer.json`` + ``integer.vectors.npz``
    (docs/integer_format.md), ``model.onnx``
    (QCDQ, checked with onnxruntime on the whole test split) and ``model.qonnx.onnx`` (QONNX,
    checked with qonnx's executor on 100 test samples: it is a slow reference interpreter).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    float_model, data, checkpoint = _load_float(config, data_dir, progress)
    num_classes = len(data.class_names)
    results = {"schema_version": RESULTS_SCHEMA_VERSION, "kind": "quantize", "config": asdict(config), "float": {},
               "quantized": {}}
    if config.mode != "scratch":
        float_test = evaluate(float_model, *data.test, num_classes=num_classes)
        results["float"] = {"test_accuracy": float_test["accuracy"], "size_bytes": model_size_bytes(float_model),
                            "num_params": count_parameters(float_model)}

    torch.manual_seed(config.seed)
    start = time.perf_counter()
    calibration = data.train[0][torch.randperm(len(data.train[0]))[:config.calibration_samples]]
    quantized = quantize(float_model, config.quant, calibration_data=calibration)
    quantized.to(device)
    if config.mode != "scratch":
        ptq = evaluate(quantized, *data.test, num_classes=num_classes)
        results["ptq_test_accuracy"] = ptq["accuracy"]
    history = []
    if config.mode in ("qat", "scratch"):
        train_config = TrainConfig(model=float_model.family, epochs=config.epochs, lr=config.lr,
                                   batch_size=config.batch_size, seed=config.seed, device=str(device))
        history = fine_tune(quantized, data, train_config, progress)
    quantized.cpu().eval()
    test = evaluate(quantized, *data.test, num_classes=num_classes)
    results["quantized"] = {
        "test_accuracy": test["accuracy"], "per_class_accuracy": dict(zip(data.class_names, test["per_class_accuracy"])),
        "confusion_matrix": test["confusion"], "spike_rate_per_layer": test.get("spike_rate_per_layer", []),
        "size_bytes": model_size_bytes(float_model, config.quant.weight_bits),
        "val_accuracy": evaluate(quantized, *data.val, num_classes=num_classes)["accuracy"],
    }
    if config.mode != "scratch":
        results["accuracy_drop_points"] = 100 * (results["float"]["test_accuracy"] - test["accuracy"])
    results["history"] = history
    results["wall_time_s"] = time.perf_counter() - start
    save_checkpoint(out_dir / "quantized.pt", {**quantized_to_dict(quantized), "model_state": quantized.state_dict(),
                                               "normalizer": data.normalizer.state_dict(),
                                               "class_names": data.class_names})
    if config.export:
        results["integer_reference"] = integer_agreement(quantized, data.test[0])
        description, arrays = export_integer(quantized, data.feature_config, data.normalizer)
        vectors = None
        if description["spiking"]:  # the first test recordings, as codes, with what the reference computes
            codes = quantize_input(description, data.test[0][:TEST_VECTOR_SAMPLES].cpu().numpy())
            vectors = make_test_vectors(description, arrays, codes)
        save_integer(description, arrays, out_dir / "integer", vectors=vectors)
        with torch.no_grad():  # the Brevitas model's test predictions, computed once for both exports
            predictions = quantized(data.test[0]).logits.argmax(1).numpy()
        onnx_path = export_onnx(quantized, data.test[0][:2], out_dir / "model.onnx")
        same = onnx_predictions(onnx_path, data.test[0]) == predictions
        results["onnx"] = {"path": onnx_path.name, "prediction_agreement": float(same.mean())}
        qonnx_path = export_qonnx_model(quantized, data.test[0][:50], out_dir / "model.qonnx.onnx")
        same = qonnx_predictions(qonnx_path, data.test[0][:100]) == predictions[:100]
        results["qonnx"] = {"path": qonnx_path.name, "prediction_agreement": float(same.mean()),
                            "samples": len(same)}
    results["versions"] = library_versions()
    write_json(out_dir / "results.json", results)
    return results
