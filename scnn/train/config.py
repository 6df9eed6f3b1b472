"""How a model is trained: the training config and the device it runs on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TrainConfig:
    """How a model is trained (one flat object, printed at the start and saved everywhere).

    optimizer: "adam" | "adamw"; lr: learning rate; weight_decay: L2 (adam) / decoupled (adamw).
    schedule: "cosine" | "onecycle" | "constant", stepped per batch.
    grad_clip: max gradient norm (0: off). loss: see :mod:`scnn.train.losses`.
    patience: early stopping after this many epochs without a better validation accuracy (0: off).
    threads: torch CPU threads (0: torch's default). device: "auto" | "cpu" | "cuda" | "cuda:N".
    tf32: allow TensorFloat-32 on CUDA (faster, but not the float32 model; see resolve_device).
    time_shift, time_mask, freq_mask: training-batch augmentation in frames/coefficients (see scnn.features.augment).
    """

    model: str = "model_b"
    model_overrides: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    grad_clip: float = 1.0
    loss: str = "ce_membrane"
    seed: int = 0
    patience: int = 0
    threads: int = 0
    device: str = "auto"
    tf32: bool = False
    time_shift: int = 3
    time_mask: int = 4
    freq_mask: int = 4



def resolve_device(name: str = "auto", tf32: bool = False) -> torch.device:
    """"auto" picks CUDA when available, else the CPU.

    On CUDA, TF32 (10-bit mantissa) convolutions and matmuls are switched off unless
    ``tf32``: PyTorch enables them for cuDNN by default, and on an H200 they changed 5.5 %
    of Model A's spikes against the snntorch reference and the CPU (membranes off by
    0.66); in full float32 the GPU matched both to 5e-7 and no spike differed.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine (use auto or cpu)")
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    return device

