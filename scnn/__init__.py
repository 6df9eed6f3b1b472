"""scnn: spiking convolutional neural networks for audio at the edge.

Main entry points:
    scnn.models.create_model("model_b", num_steps=10, beta=0.5)
    scnn.training.train(TrainConfig(...), DataConfig(...), out_dir)
    scnn.features.extract_features(paths, feature_config("default"))
"""

__version__ = "0.1.0"

from scnn import ssm as _ssm  # noqa: E402,F401  (registers the SSM presets with scnn.models)
