"""Models by name (timm's shape): families register a config dataclass and a builder, presets
register default values of a family. This module imports no model; ``scnn.models`` imports
the families, which register themselves.

Every family states the kind of input its models take (``input_kind``: "static" ``[B, C, ...]``,
the same at every step, or "sequence" ``[T, B, ...]``, one input per step; a class attribute, or a
property when it depends on the config) and the encoder that turns prepared static features into
it (``encoding``, :mod:`scnn.features.encoders`); registration and :func:`build_model` check it.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Callable

from torch import nn

from scnn.features.encoders import INPUT_KINDS


def count_parameters(model: nn.Module) -> int:
    """Trainable and fixed weights and biases (neuron beta/threshold buffers excluded)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.endswith(("beta", "threshold")))


def is_spiking(model: nn.Module) -> bool:
    """True for a model whose config says it spikes (its forward takes ``record=True`` and runs T steps)."""
    return bool(getattr(getattr(model, "config", None), "spiking", False))



MODEL_FAMILIES: dict[str, tuple[type, Callable]] = {}



MODEL_PRESETS: dict[str, tuple[str, dict]] = {}
SPEC_FAMILY = "spec_net"  # the family that reads an unregistered name as a spec string



def register_model(name: str, family: str, **defaults) -> None:
    """Register a preset ``name`` of model ``family`` with default config values."""
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    MODEL_PRESETS[name] = (family, defaults)



def register_family(family: str, config_class: type, builder: Callable) -> None:
    """Register a model family: its config dataclass and a builder taking that config (a model class
    that states ``input_kind`` and ``encoding``, see the module docstring)."""
    for name in ("input_kind", "encoding"):
        if not hasattr(builder, name):
            raise TypeError(f"model family {family!r}: {getattr(builder, '__name__', builder)} states no {name}; "
                            f"give it one (input_kind: one of {INPUT_KINDS}; encoding: a registered encoder)")
    MODEL_FAMILIES[family] = (config_class, builder)



def list_models() -> list[str]:
    return sorted(MODEL_PRESETS)



def model_config(name: str, **overrides):
    """(family, config) for a preset name or a spec string, with keyword overrides.

    A name that is not registered but parses as a spec builds a spiking spec model.
    Unknown override names raise a TypeError listing the valid ones.
    """
    if name in MODEL_PRESETS:
        family, defaults = MODEL_PRESETS[name]
    else:
        # Any other name is read as a spec string (the spec family parses and validates it).
        family, defaults = SPEC_FAMILY, {"spec": name}
        if family not in MODEL_FAMILIES:
            raise ValueError(f"unknown model {name!r}; presets: {', '.join(list_models())}")
    config_class, _ = MODEL_FAMILIES[family]
    valid = {f.name for f in fields(config_class)}
    unknown = set(overrides) - valid
    if unknown:
        raise TypeError(f"model {name!r} has no option(s) {sorted(unknown)}; valid: {sorted(valid)}")
    try:
        return family, config_class(**{**defaults, **overrides})
    except ValueError as error:
        if name in MODEL_PRESETS:
            raise
        raise ValueError(f"unknown model {name!r}: not a preset ({', '.join(list_models())}) and {error}") from None



def create_model(name: str, **overrides) -> nn.Module:
    """Build a model by preset name or spec string: ``create_model("model_b", num_steps=10, beta=0.5)``."""
    family, config = model_config(name, **overrides)
    return build_model(family, config)



def build_model(family: str, config) -> nn.Module:
    _, builder = MODEL_FAMILIES[family]
    model = builder(config)
    if model.input_kind not in INPUT_KINDS:
        raise TypeError(f"model family {family!r}: input_kind must be one of {INPUT_KINDS}, got {model.input_kind!r}")
    model.family = family
    return model



def model_to_dict(model: nn.Module) -> dict:
    """The model's family and config as plain values (stored in checkpoints)."""
    return {"family": model.family, "config": asdict(model.config)}



def model_from_dict(description: dict) -> nn.Module:
    """Rebuild an (untrained) model from :func:`model_to_dict`'s output."""
    family = description["family"]
    if family not in MODEL_FAMILIES:
        raise ValueError(f"checkpoint names unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    config_class, _ = MODEL_FAMILIES[family]
    return build_model(family, config_class(**description["config"]))

