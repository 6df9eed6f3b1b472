"""Models by name: spec nets (Models A, B, the control CNN, any spec string) and SSMs.

This package imports every model family, which registers itself with
:mod:`scnn.models.registry` (the registry itself imports no model).
"""

from scnn.models.registry import (MODEL_FAMILIES, MODEL_PRESETS, build_model, count_parameters, create_model,
                                  list_models, model_config, model_from_dict, model_to_dict, register_family,
                                  register_model)
from scnn.models.outputs import NetOutput
from scnn.models.spec_net import LayerSpec, SpecNet, SpecNetConfig, parse_spec
from scnn.models import ssm as _ssm  # noqa: F401  (registers the SSM presets)
from scnn.models import streaming as _streaming  # noqa: F401  (registers the streaming presets)
