"""Waveform augmentation of training batches: additive coloured noise at a random SNR, gain, speed.

Acts on fitted waveforms ``[B, samples]`` (:func:`scnn.features.torch_mfcc.fitted_waveform`: trimmed,
levelled, centre-fitted) before the torch MFCC front end; every draw comes from one explicit
``torch.Generator`` (CPU), whose state the trainer checkpoints, so a seeded run and its resume see the
same augmentations.

speed: each sample is resampled (linear interpolation) by a factor drawn uniformly from
    [1 - speed, 1 + speed] (> 1 faster: shorter and higher, as tape speed), then centre-fitted back.
gain_db: each sample is scaled by a gain drawn uniformly in [-gain_db, gain_db] dB.
noise_prob: the share of samples that get noise; its colour is drawn from ``noise_colours`` (and, where
    ``recordings`` of real noise are given, "a recording" as one more equally likely choice: a random one,
    looped from a random offset) and its SNR uniformly from [snr_min, snr_max] dB, over the fitted waveform
    (the window the model sees).
"""

from __future__ import annotations

import math

import torch

from scnn.features.noise import COLOURS


def torch_coloured_noise(colours: list[int], length: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-RMS noise ``[len(colours), length]``: row i has power ~ 1/f^colours[i] (0 white, 1 pink, 2 brown)."""
    count = len(colours)
    bins = length // 2 + 1
    spectrum = torch.complex(torch.randn(count, bins, generator=generator), torch.randn(count, bins, generator=generator))
    frequency = torch.arange(bins, dtype=torch.float32).clamp(min=1.0)
    exponent = torch.tensor(colours, dtype=torch.float32).unsqueeze(1)
    spectrum = spectrum * frequency.unsqueeze(0) ** (-exponent / 2)
    spectrum[:, 0] = 0
    noise = torch.fft.irfft(spectrum, n=length)
    return noise / noise.square().mean(1, keepdim=True).sqrt()


def recording_noise(recordings: list[torch.Tensor], length: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-RMS ``[length]`` from one of ``recordings`` (1-D, non-silent), looped from a random offset."""
    chosen = recordings[int(torch.randint(0, len(recordings), (1,), generator=generator))]
    offset = int(torch.randint(0, chosen.numel(), (1,), generator=generator))
    looped = torch.roll(chosen, -offset).repeat(length // chosen.numel() + 1)[:length]
    looped = looped - looped.mean()
    return looped / looped.square().mean().sqrt().clamp(min=1e-12)


def load_noise_folder(folder: str, sample_rate: int) -> list[torch.Tensor]:
    """Every ``*.wav`` under ``folder`` (sorted, recursive) as mono float32 at ``sample_rate``; a missing or
    empty folder, or unreadable or silent files, raise one ValueError that names them all."""
    from pathlib import Path

    from scnn.features.mfcc import AudioFileError, load_audio

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"train.noise_dir: {folder} is not a folder")
    files = sorted(root.rglob("*.wav"))
    if not files:
        raise ValueError(f"train.noise_dir: no .wav files in {folder}")
    recordings, problems = [], []
    for path in files:
        try:
            audio = load_audio(path, sample_rate)
        except AudioFileError as error:
            problems.append(str(error))
            continue
        if audio.size < 2 or not (audio != 0).any():
            problems.append(f"{path}: silent or shorter than 2 samples, no use as noise")
            continue
        recordings.append(torch.from_numpy(audio))
    if problems:
        raise ValueError(f"train.noise_dir: {len(problems)} of {len(files)} noise files cannot be used: "
                         + "; ".join(problems))
    return recordings


def _fit_center(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Centre-crop or centre-zero-pad ``waveform [samples]`` to ``length``."""
    current = waveform.numel()
    if current >= length:
        start = (current - length) // 2
        return waveform[start:start + length]
    before = (length - current) // 2
    return torch.nn.functional.pad(waveform, (before, length - current - before))


def augment_waveforms(waveforms: torch.Tensor, generator: torch.Generator, noise_prob: float = 0.0,
                      snr_min: float = 0.0, snr_max: float = 20.0, noise_colours: tuple[str, ...] = COLOURS,
                      gain_db: float = 0.0, speed: float = 0.0,
                      recordings: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Augmented copy of ``waveforms [B, samples]`` (float32, CPU). Draws are made in a fixed order and
    only for the augmentations switched on, so a setting switched off changes nothing else."""
    batch, length = waveforms.shape
    out = waveforms.clone()
    if speed:
        factors = 1.0 + (torch.rand(batch, generator=generator) * 2 - 1) * speed
        rows = []
        for row, factor in zip(out, factors.tolist()):
            resampled = torch.nn.functional.interpolate(row[None, None], size=max(2, round(length / factor)),
                                                        mode="linear", align_corners=False)[0, 0]
            rows.append(_fit_center(resampled, length))
        out = torch.stack(rows)
    if gain_db:
        gains = (torch.rand(batch, 1, generator=generator) * 2 - 1) * gain_db
        out = out * 10.0 ** (gains / 20.0)
    if noise_prob:
        chosen = torch.rand(batch, generator=generator) < noise_prob
        picks = torch.randint(0, len(noise_colours) + bool(recordings), (batch,), generator=generator)
        snr = snr_min + torch.rand(batch, generator=generator) * (snr_max - snr_min)
        exponents = [COLOURS.index(noise_colours[min(i, len(noise_colours) - 1)]) for i in picks.tolist()]
        noise = torch_coloured_noise(exponents, length, generator)
        if recordings:
            for row in (picks == len(noise_colours)).nonzero().flatten().tolist():
                noise[row] = recording_noise(recordings, length, generator)
        signal_power = out.square().mean(1)
        gain = (signal_power / 10.0 ** (snr / 10.0)).sqrt() * chosen  # unit-RMS noise -> P(noise) = P(signal)/10^(snr/10)
        out = out + gain.unsqueeze(1) * noise
    return out


def mixup_batch(x: torch.Tensor, generator: torch.Generator, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018): ``(lam * x + (1 - lam) * x[perm], perm, lam)`` with lam ~ Beta(alpha, alpha);
    the loss is then ``lam * loss(y) + (1 - lam) * loss(y[perm])``."""
    lam = _beta_symmetric(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator)
    return lam * x + (1 - lam) * x[perm], perm, lam


def _beta_symmetric(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha) by Johnk's algorithm (rejection on two uniforms), from ``generator``."""
    while True:
        u, v = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        x, y = u ** (1.0 / alpha), v ** (1.0 / alpha)
        if 0 < x + y <= 1:
            return x / (x + y)
