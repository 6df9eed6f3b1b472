"""Augmentation: seeded, shape-preserving, masks and shifts do what they say."""

import torch

from scnn.features.augment import augment_batch


def test_off_is_identity_and_seeded_is_reproducible():
    x = torch.randn(8, 1, 32, 32)
    assert augment_batch(x, torch.Generator().manual_seed(0)) is x
    first = augment_batch(x, torch.Generator().manual_seed(5), time_shift=3, time_mask=4, freq_mask=4)
    second = augment_batch(x, torch.Generator().manual_seed(5), time_shift=3, time_mask=4, freq_mask=4)
    assert first.shape == x.shape and torch.equal(first, second)
    assert not torch.equal(first, augment_batch(x, torch.Generator().manual_seed(6), time_shift=3, time_mask=4,
                                                freq_mask=4))


def test_time_shift_moves_frames_and_fills_with_zero():
    x = torch.arange(1, 11, dtype=torch.float).repeat(4, 1, 2, 1)  # [4, 1, 2, 10], frame values 1..10
    shifted = augment_batch(x, torch.Generator().manual_seed(1), time_shift=2)
    for row in shifted[:, 0, 0]:
        kept = row[row != 0]
        assert torch.equal(kept, torch.arange(kept[0], kept[0] + len(kept)))  # contiguous frames survive
        assert len(kept) >= 8


def test_masks_zero_at_most_the_given_width():
    x = torch.ones(64, 1, 16, 20)
    masked = augment_batch(x, torch.Generator().manual_seed(2), time_mask=3)
    zero_frames = (masked[:, 0] == 0).all(dim=1).sum(dim=1)  # per sample
    assert zero_frames.max() <= 3 and zero_frames.max() > 0
    masked = augment_batch(x, torch.Generator().manual_seed(2), freq_mask=5)
    zero_rows = (masked[:, 0] == 0).all(dim=2).sum(dim=1)
    assert zero_rows.max() <= 5 and zero_rows.max() > 0
