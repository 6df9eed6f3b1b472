"""Feature-level data augmentation for training batches (SpecAugment-style).

All operations act on normalised MFCC batches ``[B, 1, rows, frames]``, where 0 is
the per-coefficient training mean, and draw from an explicit ``torch.Generator``
so that a seeded (and resumed) run sees the same augmentations.

time_shift: shift every sample by a random whole number of frames in
    [-time_shift, time_shift], filling with 0 (the recording starts or ends a little
    earlier or later).
time_mask: set a random run of 0..time_mask consecutive frames to 0.
freq_mask: set a random run of 0..freq_mask consecutive coefficients to 0.
"""

from __future__ import annotations

import torch


def _random_runs(count: int, length: int, max_width: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask ``[count, length]``, True on one random run of 0..max_width positions per row."""
    width = torch.randint(0, max_width + 1, (count, 1), generator=generator)
    start = (torch.rand(count, 1, generator=generator) * (length - width + 1)).long()
    positions = torch.arange(length).unsqueeze(0)
    return (positions >= start) & (positions < start + width)


def augment_batch(x: torch.Tensor, generator: torch.Generator, time_shift: int = 0, time_mask: int = 0,
                  freq_mask: int = 0) -> torch.Tensor:
    """Augmented copy of ``x`` ``[B, C, rows, frames]`` (CPU random draws, applied on x's device)."""
    if not (time_shift or time_mask or freq_mask):
        return x
    batch, _, rows, frames = x.shape
    x = x.clone()
    if time_shift:
        shifts = torch.randint(-time_shift, time_shift + 1, (batch,), generator=generator)
        source = torch.arange(frames).unsqueeze(0) - shifts.unsqueeze(1)            # [B, frames]
        valid = (source >= 0) & (source < frames)
        index = source.clamp(0, frames - 1).to(x.device)
        x = torch.gather(x, 3, index[:, None, None, :].expand_as(x))
        x = x * valid.to(x.device, x.dtype)[:, None, None, :]
    if time_mask:
        mask = _random_runs(batch, frames, time_mask, generator).to(x.device)
        x = x.masked_fill(mask[:, None, None, :], 0.0)
    if freq_mask:
        mask = _random_runs(batch, rows, freq_mask, generator).to(x.device)
        x = x.masked_fill(mask[:, None, :, None], 0.0)
    return x
