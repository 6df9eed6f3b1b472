"""How a model is trained: the training config and the device it runs on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from scnn.train.losses import LOSSES
from scnn.validate import check_choice, check_number

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "onecycle", "constant")


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

    def __post_init__(self):
        check_number("train.epochs", self.epochs, 1, integer=True)
        check_number("train.batch_size", self.batch_size, 1, integer=True)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_number("train.lr", self.lr, 0.0)  # 0 freezes the weights (tests, evaluation runs)
        check_number("train.weight_decay", self.weight_decay, 0.0)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_number("train.grad_clip", self.grad_clip, 0.0)
        check_choice("train.loss", self.loss, LOSSES)
        check_number("train.seed", self.seed, integer=True)
        for name in ("patience", "threads", "time_shift", "time_mask", "freq_mask"):
            check_number(f"train.{name}", getattr(self, name), 0, integer=True)
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda")
                                                    or self.device.startswith("cuda:")):
            raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N; got {self.device!r}")



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

