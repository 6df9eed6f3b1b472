"""scnn: spiking convolutional neural networks for audio at the edge.

Main entry points (see docs/architecture.md for the package map):
    scnn.models.create_model("model_b", num_steps=10, beta=0.5)
    scnn.train.train(TrainConfig(...), DataConfig(...), out_dir)
    scnn.train.run_config.load_run_config("configs/fsdd_model_b.yaml", ["train.epochs=40"])
    the `scnn` command (scnn.cli)
"""

__version__ = "0.2.0"
