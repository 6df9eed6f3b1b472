"""Train / validation / test splits of a list of recordings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scnn.data.registry import Recording


SPLITS = ("official", "speaker", "random")



@dataclass(frozen=True)
class Split:
    """Disjoint train, validation and test recordings."""

    train: list[Recording]
    val: list[Recording]
    test: list[Recording]



def _stratified_take(recordings: list[Recording], fraction: float, seed: int) -> tuple[list, list]:
    """(rest, taken): ``round(fraction * n_class)`` recordings per class chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    taken_ids = set()
    for label in sorted({r.label for r in recordings}):
        members = sorted((r for r in recordings if r.label == label), key=lambda r: (str(r.path), r.index or 0))
        count = int(round(fraction * len(members)))
        for index in rng.permutation(len(members))[:count]:
            taken_ids.add(members[index].key)  # path, or path#row where one file holds many samples
    rest = [r for r in recordings if r.key not in taken_ids]
    taken = [r for r in recordings if r.key in taken_ids]
    return rest, taken



def split_recordings(recordings: list[Recording], split: str = "official", val_fraction: float = 0.1, seed: int = 0,
                     holdout_speaker: str = "theo", test_fraction: float = 0.1) -> Split:
    """Split into train / validation / test; validation is carved out of train (stratified, seeded), unless
    the official split of a dataset that has its own validation part is asked for.

    official: the dataset's own parts (FSDD: takes 0-4 test, 5-49 train, upstream's definition; Speech
    Commands: its list files, and then its validation part is the validation split, val_fraction unused). speaker: every file of
    ``holdout_speaker`` is test. random: stratified ``test_fraction`` per class, seeded.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    recordings = sorted(recordings, key=lambda r: (str(r.path), r.index or 0))
    if split == "official":
        if any(r.official_part is None for r in recordings):
            raise ValueError("this dataset defines no official split (as FSDD's takes 0-4 for test); "
                             "use 'random' or 'speaker'")
        train = [r for r in recordings if r.official_part == "train"]
        test = [r for r in recordings if r.official_part == "test"]
        val = [r for r in recordings if r.official_part == "val"]
        if val:  # the dataset's own validation part (Speech Commands' validation_list.txt), not one carved out
            return Split(train=train, val=val, test=test)
    elif split == "speaker":
        speakers = sorted({r.speaker for r in recordings if r.speaker is not None})
        if holdout_speaker not in speakers:
            raise ValueError(f"unknown holdout speaker {holdout_speaker!r}; known speakers: {', '.join(speakers)}")
        train = [r for r in recordings if r.speaker != holdout_speaker]
        test = [r for r in recordings if r.speaker == holdout_speaker]
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        train, test = _stratified_take(recordings, test_fraction, seed)
    train, val = _stratified_take(train, val_fraction, seed + 1_000_003)
    return Split(train=train, val=val, test=test)

