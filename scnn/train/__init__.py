"""Training and evaluation: one fit loop for float training, QAT and searches."""

from scnn.data.prepare import DataConfig, PreparedData, prepare_data
from scnn.train.config import TrainConfig, resolve_device
from scnn.train.evaluate import evaluate, evaluate_checkpoint, load_trained_model
from scnn.train.loop import CHECKPOINT_VERSION, train, training_parts
from scnn.train.run import library_versions
from scnn.train.run_config import RunConfig, load_run_config
