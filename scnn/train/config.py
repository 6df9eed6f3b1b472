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
    noise_prob, noise_snr_min, noise_snr_max, noise_colours, gain_db, speed: waveform augmentation of each
        training batch (scnn.features.wave_augment; 0 switches each off): the share of samples given noise,
        its SNR range in dB, its colours ("white,pink,brown"), gain range +-dB, speed factor range 1 +- speed.
        Any of them on makes the trainer keep the training waveforms and compute MFCCs per batch in torch.
    noise_dir: a folder of noise recordings (*.wav) drawn as one more noise kind beside the colours ("": none).
    vtlp: vocal-tract-length perturbation, each training sample's spectrum warped by a factor drawn from
        1 +- vtlp (scnn.features.wave_augment.vtlp_warp; 0: off); a waveform augmentation like noise.
    eq_db: random channel response of each training sample, a smooth gain curve over frequency within about
        +-eq_db dB (scnn.features.wave_augment.draw_eq_gains; 0: off); a waveform augmentation like VTLP.
    mixup: Beta(mixup, mixup) mixup of the training batch's features and losses (0: off).
    event_channel_jitter, event_time_jitter, event_drop: event-level augmentation of spike-event datasets
        (SHD, SSC; :func:`scnn.data.heidelberg.augment_events`), drawn afresh for every training batch of every
        epoch, before binning: channel shift std in channels, spike time shift std in seconds, share of spikes
        dropped (0 switches each off). Validation and test samples are never augmented.
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
    noise_prob: float = 0.0
    noise_snr_min: float = 0.0
    noise_snr_max: float = 20.0
    noise_colours: str = "white,pink,brown"
    gain_db: float = 0.0
    speed: float = 0.0
    mixup: float = 0.0
    noise_dir: str = ""
    event_channel_jitter: float = 0.0
    event_time_jitter: float = 0.0
    event_drop: float = 0.0
    vtlp: float = 0.0
    eq_db: float = 0.0

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
        check_number("train.noise_prob", self.noise_prob, 0.0, 1.0)
        check_number("train.noise_snr_min", self.noise_snr_min)
        check_number("train.noise_snr_max", self.noise_snr_max)
        if self.noise_snr_max < self.noise_snr_min:
            raise ValueError(f"train.noise_snr_max ({self.noise_snr_max}) must be >= train.noise_snr_min "
                             f"({self.noise_snr_min})")
        colours = [c.strip() for c in str(self.noise_colours).split(",") if c.strip()]
        if not colours or any(c not in ("white", "pink", "brown") for c in colours):
            raise ValueError(f"train.noise_colours must be a comma-separated list of white, pink, brown; "
                             f"got {self.noise_colours!r}")
        check_number("train.gain_db", self.gain_db, 0.0)
        check_number("train.speed", self.speed, 0.0, 0.5)
        check_number("train.mixup", self.mixup, 0.0)
        check_number("train.event_channel_jitter", self.event_channel_jitter, 0.0)
        check_number("train.event_time_jitter", self.event_time_jitter, 0.0)
        check_number("train.event_drop", self.event_drop, 0.0, 1.0)
        if self.event_drop >= 1.0:
            raise ValueError(f"train.event_drop must be < 1 (the share of spikes dropped); got {self.event_drop}")
        if self.event_augmentation and self.waveform_augmentation:
            raise ValueError("train.event_* (spike events) and train.noise_prob / gain_db / speed (waveforms) "
                             "exclude each other: a dataset holds one or the other")
        check_number("train.vtlp", self.vtlp, 0.0, 0.5)
        check_number("train.eq_db", self.eq_db, 0.0, 30.0)
        if not isinstance(self.noise_dir, str):
            raise ValueError(f"train.noise_dir must be a folder path; got {self.noise_dir!r}")
        if self.noise_dir and not self.noise_prob:
            raise ValueError("train.noise_dir is set but train.noise_prob is 0: no noise would be drawn from it")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda")
                                                    or self.device.startswith("cuda:")):
            raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N; got {self.device!r}")


    @property
    def waveform_augmentation(self) -> bool:
        """Whether training batches are augmented as waveforms (features then computed per batch)."""
        return bool(self.noise_prob or self.gain_db or self.speed or self.vtlp or self.eq_db)

    @property
    def event_augmentation(self) -> bool:
        """Whether training batches of spike events are augmented as events (and binned per batch)."""
        return bool(self.event_channel_jitter or self.event_time_jitter or self.event_drop)

    def wave_augment_options(self) -> dict:
        """Keyword arguments of :func:`scnn.features.wave_augment.augment_waveforms`."""
        return {"noise_prob": self.noise_prob, "snr_min": self.noise_snr_min, "snr_max": self.noise_snr_max,
                "noise_colours": tuple(c.strip() for c in self.noise_colours.split(",") if c.strip()),
                "gain_db": self.gain_db, "speed": self.speed}


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

