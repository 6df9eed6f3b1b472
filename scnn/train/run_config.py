"""Run configs: one tree of the existing dataclasses, read from YAML or TOML files and
overridden key by key, saved in every checkpoint and results file.

A run config has three sections (``configs/fsdd_model_b.yaml`` is one)::

    model:   {name: model_b, num_steps: 10, beta: 0.5}   # a preset or spec string, and its options
    data:    DataConfig fields                          # dataset, split, features, ...
    train:   TrainConfig fields                         # epochs, lr, schedule, augmentation, ...

Precedence, lowest first: the dataclasses' defaults, the file, then ``KEY=VALUE`` overrides
(``train.epochs=40 model.beta=0.7 data.split=speaker``; values in YAML syntax, so
``model.neuron_options={}`` or ``data.feature_overrides.top_db=20`` work too). OmegaConf
parses and merges; this module checks every key and type against the dataclasses and names
the offending key (``train.epcohs: no such option; valid: ...``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scnn.data.prepare import DataConfig
from scnn.train.config import TrainConfig

SECTIONS = ("model", "data", "train")
_MODEL_KEYS_IN_TRAIN = ("model", "model_overrides")  # TrainConfig's mirror of the model section


@dataclass
class RunConfig:
    """A training run: ``model`` (``{"name": preset or spec, **options}``), ``data``, ``train``.

    ``train.model`` and ``train.model_overrides`` always mirror the model section (the
    checkpoints of the first version stored only those).
    """

    model: dict = field(default_factory=lambda: {"name": "model_b"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        self.model = dict(self.model)
        if not isinstance(self.model.get("name"), str) or not self.model["name"]:
            raise ValueError("model.name: give a preset (model_a, model_b, ...) or a spec string such as 6C3-128FC-10FC")
        options = {key: value for key, value in self.model.items() if key != "name"}
        self.train = dataclasses.replace(self.train, model=self.model["name"], model_overrides=options)

    def to_dict(self) -> dict:
        """Plain values, sections in order; ``train`` without its mirror of the model section."""
        train = {k: v for k, v in asdict(self.train).items() if k not in _MODEL_KEYS_IN_TRAIN}
        return {"model": dict(self.model), "data": asdict(self.data), "train": train}

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Build and check a run config from plain values (unknown sections or keys are errors)."""
        unknown = set(values) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; a run config has {', '.join(SECTIONS)}")
        train_values = dict(values.get("train") or {})
        # A saved TrainConfig (first-version checkpoints) carries the model as model + model_overrides.
        legacy = {key: train_values.pop(key) for key in _MODEL_KEYS_IN_TRAIN if key in train_values}
        model = dict(values.get("model") or {})
        if not model:
            model = {"name": legacy.get("model", "model_b"), **legacy.get("model_overrides", {})}
        check_model_options(model)
        return cls(model=model, data=build_dataclass(DataConfig, values.get("data") or {}, "data"),
                   train=build_dataclass(TrainConfig, train_values, "train"))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "RunConfig":
        """The run config a checkpoint was trained with (first-version checkpoints included)."""
        if "run_config" in checkpoint:
            return cls.from_dict(checkpoint["run_config"])
        return cls.from_dict({"data": _legacy_data(checkpoint["data_config"]), "train": checkpoint["train_config"]})

    def dump(self) -> str:
        """The config as YAML, as it is printed at the start of a run and saved beside it."""
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(OmegaConf.create(self.to_dict()))


def _legacy_data(values: dict) -> dict:
    return asdict(DataConfig.from_dict(values))


def check_model_options(model: dict) -> None:
    """The model section names a known model and only options its family has (ValueError naming them)."""
    from scnn.models import model_config

    options = {key: value for key, value in model.items() if key != "name"}
    try:
        model_config(model.get("name", "model_b"), **options)
    except TypeError as error:  # unknown option names: a user error, reported like the others
        raise ValueError(f"model: {error}") from None


def build_dataclass(cls, values: dict, section: str):
    """``cls(**values)`` after checking every key exists and every value has the field's type.

    int values are accepted for float fields; None only where the field allows it. Errors
    name ``section.key``, the value and the expected type.
    """
    if not isinstance(values, dict):
        raise ValueError(f"{section}: expected a mapping of options, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    shown = [name for name in names if not (section == "train" and name in _MODEL_KEYS_IN_TRAIN)]
    for key, value in values.items():
        if key not in shown:
            raise ValueError(f"{section}.{key}: no such option; valid: {', '.join(shown)}")
        values = {**values, key: _checked(f"{section}.{key}", value, hints[key])}
    return cls(**values)


def _checked(name: str, value, annotation):
    """``value`` converted to (or checked against) ``annotation``; ValueError naming ``name``."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{name}: a value is required (got null)")
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is str and isinstance(value, (str, Path)):
            return str(value)
        if origin in (dict, list, tuple) and isinstance(value, (dict, list, tuple)):
            return origin(value) if origin is not dict else dict(value)
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ValueError(f"{name}: expected {wanted}, got {value!r}")


def load_run_config(path: str | Path | None = None, overrides: list[str] | tuple = (),
                    updates: dict | None = None) -> RunConfig:
    """The defaults, then the YAML/TOML file at ``path``, then ``updates`` (a nested dict, e.g. from
    command-line flags), then ``KEY=VALUE`` overrides, each layer over the one before."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    layers = [OmegaConf.create(RunConfig().to_dict())]
    if path is not None:
        layers.append(OmegaConf.create(read_config_file(path)))
    if updates:
        layers.append(OmegaConf.create(updates))
    bad = [item for item in overrides if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad:
        raise ValueError(f"overrides must look like section.key=value (e.g. train.epochs=40); got {', '.join(bad)}")
    try:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.to_container(OmegaConf.merge(*layers), resolve=True)
    except OmegaConfBaseException as error:
        raise ValueError(f"cannot apply overrides {' '.join(overrides)}: {error}".splitlines()[0]) from None
    return RunConfig.from_dict(merged)


def read_config_file(path: str | Path) -> dict:
    """A YAML (.yaml, .yml) or TOML (.toml) file as a dict; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise ValueError(f"config file {path}: use .yaml, .yml, .toml or .json")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            values = tomllib.loads(text)
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
    except Exception as error:  # yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError
        raise ValueError(f"config file {path} cannot be parsed: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected sections {', '.join(SECTIONS)} at the top level")
    return values
