"""What a recipe costs before any real data is at hand: parameters, dense MACs per sample, and CPU time
per training epoch measured on random inputs of the recipe's feature shape.

The time is that of :func:`scnn.train.loop.train_epoch` (augmentation, forward, backward, optimiser
step) over ``batches`` batches after one warm-up batch, extrapolated linearly to ``train_size``
samples; feature extraction, validation and testing are not included.
"""

from __future__ import annotations

import time

import torch

from scnn.metrics import dense_macs, parameter_count
from scnn.models import create_model
from scnn.train.loop import train_epoch, training_parts
from scnn.train.run_config import RunConfig


def recipe_cost(config: RunConfig, num_classes: int, train_size: int, batches: int = 10, seed: int = 0) -> dict:
    """{"parameters", "macs_per_sample" (dense, as executed; the SSM's in recurrent mode), "input_shape", "seconds_per_10k_samples",
    "seconds_per_epoch" (for ``train_size``), "timed_samples"} of one recipe on this machine's CPU,
    with torch's thread count as it is set by the caller."""
    features = config.data.features()
    shape = (1, *features.shape)
    torch.manual_seed(seed)
    model = create_model(config.train.model, **{**config.train.model_overrides, "input_shape": shape,
                                                "num_classes": num_classes})  # from the data, as in training
    size = config.train.batch_size * (batches + 1)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, *shape, generator=generator)
    y = torch.randint(0, num_classes, (size,), generator=generator)
    optimizer, scheduler, loss_fn, _, augmentation = training_parts(config.train, model, size)
    order = torch.arange(size)
    starts = list(range(0, size, config.train.batch_size))
    train_epoch(model, optimizer, scheduler, loss_fn, config.train, x, y, order, augmentation, "cpu", starts[:1])
    began = time.perf_counter()
    train_epoch(model, optimizer, scheduler, loss_fn, config.train, x, y, order, augmentation, "cpu", starts[1:])
    per_sample = (time.perf_counter() - began) / (size - config.train.batch_size)
    # As scnn.metrics.profile_model counts them: the SSM its recurrent-mode MACs, spec nets fvcore's dense count.
    macs = model.macs_per_sample() if hasattr(model, "macs_per_sample") else dense_macs(model, shape)["as_executed"]
    return {"parameters": parameter_count(model), "macs_per_sample": int(macs),
            "input_shape": list(shape), "seconds_per_10k_samples": per_sample * 10_000,
            "seconds_per_epoch": per_sample * train_size, "timed_samples": size - config.train.batch_size}
