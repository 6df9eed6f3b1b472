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
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scnn.data.prepare import DataConfig
from scnn.train.config import TrainConfig
from scnn.validate import check_type

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
        # The features are checked here, before any data work: their names and types (named as the config's
        # keys), then what FeatureConfig checks of the preset with them.
        from scnn.features.mfcc import check_feature_overrides

        check_feature_overrides(self.data.feature_overrides, "data.feature_overrides.{key}")
        self.data.features()

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


# Ranges of model options, whatever sets them (a config file, model.KEY=VALUE, --model-option, a sweep's
# values): the ranges scnn train's flags check (--beta in [0, 1], --threshold > 0, --num-steps >= 1, ...).
MODEL_OPTION_RANGES = {
    "num_steps": dict(minimum=1, integer=True),
    "beta": dict(minimum=0, maximum=1),
    "readout_beta": dict(minimum=0, maximum=1),
    "threshold": dict(minimum=0, exclusive_minimum=True),
    "surrogate_slope": dict(minimum=0, exclusive_minimum=True),
    "features": dict(minimum=1, integer=True),
    "state_size": dict(minimum=1, integer=True),
    "dt_min": dict(minimum=0, exclusive_minimum=True),
    "dt_max": dict(minimum=0, exclusive_minimum=True),
}


def _model_option_choices(key: str):
    """The allowed values of a model option that takes a name (None: any)."""
    from scnn.neurons import RESET_MECHANISMS, SURROGATES, list_neurons

    return {"surrogate": SURROGATES, "reset_mechanism": RESET_MECHANISMS, "neuron": list_neurons(),
            "conv_neuron": list_neurons(), "readout": ("membrane", "spike_count")}.get(key)


def model_config_class(name: str):
    """The config dataclass of the family a model name (preset, else spec string) belongs to; builds nothing."""
    import scnn.models  # noqa: F401  (the families register themselves)
    from scnn.models.registry import MODEL_FAMILIES, MODEL_PRESETS, SPEC_FAMILY

    family = MODEL_PRESETS[name][0] if name in MODEL_PRESETS else SPEC_FAMILY
    return MODEL_FAMILIES[family][0]


def check_model_options(model: dict, where: str = "model.{key}") -> None:
    """The model section names a known model and only options its family has, each of the field's type
    and within its range (ValueError naming it, ``where`` formatted with the option's name); builds nothing."""
    from scnn.models import model_config
    from scnn.validate import check_choice, check_number, check_type

    name = model.get("name", "model_b")
    options = {key: value for key, value in model.items() if key != "name"}
    if not isinstance(name, str) or not name:
        raise ValueError(f"model.name: give a preset (model_a, model_b, ...) or a spec string such as "
                         f"6C3-128FC-10FC; got {name!r}")
    config_class = model_config_class(name)
    hints = typing.get_type_hints(config_class)
    valid = sorted(f.name for f in dataclasses.fields(config_class))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{where.format(key=unknown[0])}: model {name!r} has no option(s) {unknown}; "
                         f"valid: {valid}")
    for key, value in options.items():
        label = where.format(key=key)
        value = check_type(label, value, hints[key])
        if key in MODEL_OPTION_RANGES and isinstance(value, (int, float)):
            check_number(label, value, **MODEL_OPTION_RANGES[key])
        if key == "dropout" and not 0 <= value < 1:
            raise ValueError(f"{label} must lie in [0, 1); got {value!r}")
        if _model_option_choices(key) is not None:
            check_choice(label, value, _model_option_choices(key))
        if key in ("downsample", "hidden") and any(item < 1 for item in value):
            raise ValueError(f"{label}: every value must be >= 1; got {value!r}")
    try:
        model_config(name, **options)
    except TypeError as error:  # a value the family's own checks cannot use: a user error all the same
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
        values = {**values, key: check_type(f"{section}.{key}", value, hints[key])}
    return cls(**values)


def load_run_config(path: str | Path | None = None, overrides: list[str] | tuple = (),
                    updates: dict | None = None) -> RunConfig:
    """The defaults, then the YAML/TOML file at ``path``, then ``updates`` (a nested dict, e.g. from
    command-line flags), then ``KEY=VALUE`` overrides, each layer over the one before."""
    return RunConfig.from_dict(merge_config_layers(RunConfig().to_dict(), path, updates, overrides,
                                                   example="train.epochs=40"))


def merge_config_layers(defaults: dict, path: str | Path | None, updates: dict | None,
                        overrides: list[str] | tuple, example: str) -> dict:
    """``defaults``, then the YAML/TOML file at ``path``, then ``updates``, then ``KEY=VALUE`` overrides, merged
    by OmegaConf into one plain nested dict (the config trees of ``scnn train`` and ``scnn quantize``);
    ValueError in one line for an override that is not ``section.key=value`` (``example`` shows one)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    layers = [OmegaConf.create(defaults)]
    if path is not None:
        layers.append(OmegaConf.create(read_config_file(path)))
    if updates:
        layers.append(OmegaConf.create(updates))
    bad = [item for item in overrides if "=" not in item or not item.split("=", 1)[0].strip()]
    if bad:
        raise ValueError(f"overrides must look like section.key=value (e.g. {example}); got {', '.join(bad)}")
    try:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_container(OmegaConf.merge(*layers), resolve=True)
    except OmegaConfBaseException as error:
        raise ValueError(f"cannot apply overrides {' '.join(overrides)}: {error}".splitlines()[0]) from None


def _parse_problem(error: Exception) -> str:
    """What a YAML, TOML or JSON parser found wrong, in one line with where (line and column, from 1)."""
    problem = getattr(error, "problem", None)  # yaml's MarkedYAMLError: problem, problem_mark (from 0)
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if problem:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = getattr(error, "context", None)
        return f"{context + ': ' if context else ''}{problem}{where}"
    return " ".join(str(error).split()) or type(error).__name__


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
        raise ValueError(f"config file {path} cannot be parsed: {_parse_problem(error)}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected sections {', '.join(SECTIONS)} at the top level")
    return values
