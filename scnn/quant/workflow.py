"""Quantisation workflows: post-training quantisation (PTQ), quantisation-aware training (QAT)
from a float checkpoint or from scratch, export (integer artefact, ONNX), and the checks
that the exported models agree with the fake-quantised one.

:func:`run_quantization` is what ``experiments/quantize.py`` calls; it writes ``results.json``.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from scnn.data.prepare import DataConfig, PreparedData, checkpoint_data, prepare_data
from scnn.io import save_checkpoint, write_json
from scnn.models.registry import count_parameters, create_model
from scnn.quant.config import QuantConfig
from scnn.quant.exports import DEFAULT_EXPORTS, check_exports, run_exports
from scnn.quant.twin import QuantSpecNet, model_size_bytes, quantize, quantized_to_dict
from scnn.train.config import TrainConfig, resolve_device
from scnn.train.evaluate import checkpoint_run_config, evaluate, load_trained_model
from scnn.train.loop import FitState, fit, training_parts
from scnn.train.run import RESULTS_SCHEMA_VERSION, library_versions
from scnn.train.run_config import RunConfig, build_dataclass, check_model_options, merge_config_layers


@dataclass
class QuantRunConfig:
    """One quantisation run.

    checkpoint: float checkpoint (best.pt of train.py); None with from_scratch.
    mode: "ptq" (calibrate only), "qat" (PTQ, then fine-tune), "scratch" (QAT from random weights of ``model``).
    quant: bit widths and fixed-point choices (:class:`scnn.quant.QuantConfig`, every field of it).
    export, exports: run these registered exports (:mod:`scnn.quant.exports`) after quantising; None: the
    model's defaults (:func:`default_exports`: integer, ONNX and QONNX for spec nets, the integer artefact
    alone for streaming models, whose ONNX graphs unroll every frame).
    epochs, lr, batch_size: QAT; calibration_samples: training samples used to calibrate.
    train_per_class: keep only the first N training recordings per class (0: all), for quick runs.
    data: :class:`scnn.data.DataConfig` fields. With ``mode="scratch"``, the data the model is trained and
    tested on (fields left out take DataConfig's defaults); from a checkpoint, the fields changed from the
    checkpoint's data config (``data_dir`` where the recordings are now, another ``split``, ...), as
    ``scnn evaluate`` changes them.

    A config file (:func:`load_quantize_config`, ``configs/quantize/``) holds the same tree in four sections:
    ``quantize`` (the fields here but quant, model, model_overrides and data), ``quant`` (QuantConfig),
    ``model`` (``name`` and options: the model of ``mode="scratch"``) and ``data``.
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
    exports: tuple | None = None
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.quant, dict):
            self.quant = QuantConfig(**self.quant)
        data = build_dataclass(DataConfig, dict(self.data or {}), "data")  # every key and type checked
        self.data = {key: getattr(data, key) for key in (self.data or {})}
        if self.exports is not None:
            self.exports = tuple(self.exports)
            check_exports(self.exports)
        if self.mode not in ("ptq", "qat", "scratch"):
            raise ValueError(f"mode must be ptq, qat or scratch, got {self.mode!r}")
        if self.mode != "scratch" and not self.checkpoint:
            raise ValueError(f"mode {self.mode!r} needs a float checkpoint (--checkpoint)")
        for name in ("epochs", "batch_size", "calibration_samples"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be at least {0 if name == 'epochs' else 1}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


SEQUENCE_DEFAULT_EXPORTS = ("integer",)


def default_exports(quantized: QuantSpecNet) -> tuple:
    """The exports ``scnn quantize`` runs unless told: all of :data:`DEFAULT_EXPORTS` for a spec net; for a
    streaming model (frame-by-frame input) only the integer artefact: its ONNX graph unrolls the neurons over
    every frame (64 in the preset: about 3 minutes to export, and QONNX's reference executor is slower still),
    so ONNX is run when asked for (``--export onnx``)."""
    return SEQUENCE_DEFAULT_EXPORTS if quantized.sequence else DEFAULT_EXPORTS


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


# --------------------------------------------------------------------------- config files

QUANTIZE_SECTIONS = ("quantize", "quant", "model", "data")
_OWN_SECTIONS = ("quant", "model", "model_overrides", "data")  # QuantRunConfig fields given as sections


def _default_tree() -> dict:
    """The defaults as a config tree (a QuantRunConfig of the defaults is refused: mode qat needs a checkpoint)."""
    fields = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
              for f in dataclasses.fields(QuantRunConfig)}
    return {"quantize": {name: value for name, value in fields.items() if name not in _OWN_SECTIONS},
            "quant": asdict(QuantConfig()), "model": {"name": fields["model"], **fields["model_overrides"]},
            "data": fields["data"]}


def quantize_config_tree(config: QuantRunConfig) -> dict:
    """``config`` as the tree of a quantize config file: sections quantize, quant, model, data."""
    values = asdict(config)
    return {"quantize": {key: value for key, value in values.items() if key not in _OWN_SECTIONS},
            "quant": values["quant"], "model": {"name": config.model, **config.model_overrides},
            "data": dict(config.data)}


def quantize_config_from_dict(values: dict) -> QuantRunConfig:
    """A QuantRunConfig from the tree of a quantize config file; every section, key and type is checked and
    an error names the offending ``section.key``."""
    from scnn.features.mfcc import check_feature_overrides
    from scnn.validate import check_type

    if "train" in values:
        raise ValueError("section 'train' does not apply to scnn quantize: QAT's settings are quantize.epochs, "
                         "quantize.lr, quantize.batch_size and quantize.seed (a quantize config has sections "
                         f"{', '.join(QUANTIZE_SECTIONS)}; configs/quantize/)")
    unknown = sorted(set(values) - set(QUANTIZE_SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; a quantize config has {', '.join(QUANTIZE_SECTIONS)}")
    section = dict(values.get("quantize") or {})
    hints = typing.get_type_hints(QuantRunConfig)
    valid = [f.name for f in dataclasses.fields(QuantRunConfig) if f.name not in _OWN_SECTIONS]
    for key, value in section.items():
        if key not in valid:
            where = f" (it is a section of its own: {key}.*)" if key in _OWN_SECTIONS else ""
            raise ValueError(f"quantize.{key}: no such option{where}; valid: {', '.join(valid)}")
        section[key] = check_type(f"quantize.{key}", value, hints[key])
    quant = build_dataclass(QuantConfig, dict(values.get("quant") or {}), "quant")
    model = dict(values.get("model") or {"name": "model_b"})
    if not isinstance(model.get("name"), str) or not model["name"]:
        raise ValueError("model.name: give a preset (model_a, model_b, ...) or a spec string such as 6C3-128FC-10FC")
    check_model_options(model)
    data = dict(values.get("data") or {})
    check_feature_overrides(dict(data.get("feature_overrides") or {}), "data.feature_overrides.{key}")
    return QuantRunConfig(**section, quant=quant, model=model.pop("name"), model_overrides=model, data=data)


def load_quantize_config(path: str | Path | None = None, overrides: list[str] | tuple = (),
                         updates: dict | None = None) -> QuantRunConfig:
    """The run config of ``scnn quantize``, in layers as ``scnn train`` builds its own
    (:func:`scnn.train.run_config.load_run_config`): the defaults, then the YAML/TOML file at ``path``
    (sections quantize, quant, model, data; ``configs/quantize/``), then ``updates`` (a nested dict, e.g. from
    command-line flags), then ``KEY=VALUE`` overrides (``quant.weight_bits=4 quantize.epochs=10``)."""
    merged = merge_config_layers(_default_tree(), path, updates, overrides, example="quant.weight_bits=4")
    return quantize_config_from_dict(merged)


# --------------------------------------------------------------------------- running


def _data_overrides(config: QuantRunConfig, data_dir: str | None) -> dict:
    """The DataConfig fields this run sets: ``config.data``, then ``data_dir`` and ``train_per_class`` if given."""
    overrides = dict(config.data)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if config.train_per_class:
        overrides["train_per_class"] = config.train_per_class
    return overrides


def _load_float(config: QuantRunConfig, data_dir: str | None, progress: bool) -> tuple[nn.Module, PreparedData, dict]:
    """The float model and the data it was trained on (same split, features and normaliser, with
    ``config.data`` changed). From scratch: a new model of ``config.model`` and the data of ``config.data``
    (DataConfig's defaults for the fields it leaves out, as ``scnn train`` reads its data section)."""
    overrides = _data_overrides(config, data_dir)
    if config.mode == "scratch":
        data = prepare_data(DataConfig(**overrides), progress=progress)
        torch.manual_seed(config.seed)
        model = create_model(config.model, input_shape=data.input_shape, num_classes=len(data.class_names),
                             **config.model_overrides)
        return model, data, {}
    model, checkpoint = load_trained_model(config.checkpoint)
    data = checkpoint_data(checkpoint, overrides, progress)
    return model, data, checkpoint


def run_config_of(config: QuantRunConfig, checkpoint: dict, data_dir: str | None,
                  train_config: TrainConfig) -> dict | None:
    """``results.json``'s ``run_config`` (:meth:`scnn.train.RunConfig.to_dict`): from a checkpoint, the run config
    it was trained with, its ``data`` section as this run read the data; from scratch, the model and data of
    ``config`` and the QAT's TrainConfig as ``train``."""
    overrides = _data_overrides(config, data_dir)
    if checkpoint:
        return checkpoint_run_config(checkpoint, overrides)
    return RunConfig(model={"name": config.model, **config.model_overrides}, data=DataConfig(**overrides),
                     train=train_config).to_dict()


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
    # QAT (fine-tuning or from scratch) trains with these settings; the rest are TrainConfig's defaults.
    train_config = TrainConfig(model=float_model.family, epochs=config.epochs, lr=config.lr,
                               batch_size=config.batch_size, seed=config.seed, device=str(device))
    results = {"schema_version": RESULTS_SCHEMA_VERSION, "kind": "quantize", "config": asdict(config),
               "run_config": run_config_of(config, checkpoint, data_dir, train_config), "float": {},
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
        quantized.front_end = (data.feature_config, data.normalizer)  # the integer export writes them down
        names = config.exports if config.exports is not None else default_exports(quantized)
        exported = run_exports(names, quantized, data.test[0], out_dir)
        # results.json keeps the first version's key for the integer reference's agreement
        results.update({("integer_reference" if name == "integer" else name): entry for name, entry in exported.items()})
    results["versions"] = library_versions()
    write_json(out_dir / "results.json", results)
    return results
