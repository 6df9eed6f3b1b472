"""Small data sets in the official formats, for tests and for timing on synthetic sets of the real size.

Nothing here is real speech: the clips are tones and noise. What matches the releases is the layout,
the names, the list files and the audio format, so every loader and split runs on them unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from scnn.data.speech_commands import (NOISE_FOLDER, SAMPLE_RATE, WORDS_35, official_part_of)
from scnn.io import write_text


def speaker_ids(per_part: dict[str, int]) -> dict[str, list[str]]:
    """Eight-hex-digit speaker IDs (as the release's ``0a7c2a8d``), ``per_part[part]`` of them per official
    part, found by hashing as the release did (:func:`official_part_of`)."""
    found: dict[str, list[str]] = {part: [] for part in per_part}
    counter = 0
    while any(len(found[part]) < count for part, count in per_part.items()):
        speaker = hashlib.sha1(f"speaker{counter}".encode()).hexdigest()[:8]
        part = official_part_of(f"{speaker}_nohash_0.wav")
        if part in found and len(found[part]) < per_part[part]:
            found[part].append(speaker)
        counter += 1
    return found


def write_speech_commands_tree(root: str | Path, speakers_per_part: dict[str, int] | None = None,
                               takes: int = 1, seconds: float = 0.25, words: tuple[str, ...] = WORDS_35,
                               noise_seconds: float = 3.0, seed: int = 0) -> dict[str, list[str]]:
    """A Speech Commands v2 tree under ``root``: every word folder with ``takes`` clips per speaker, six
    background noise files, and list files that put each speaker where the release's hash does.

    Clips are ``seconds`` long 16 kHz PCM-16 tones (a pitch per word, plus a little noise); the real ones
    are one second. Returns the speaker IDs per part ("train", "val", "test").
    """
    import soundfile

    root = Path(root)
    speakers = speaker_ids(speakers_per_part or {"train": 3, "val": 1, "test": 1})
    rng = np.random.default_rng(seed)
    samples = int(seconds * SAMPLE_RATE)
    time = np.arange(samples) / SAMPLE_RATE
    lists: dict[str, list[str]] = {"val": [], "test": []}
    for word_index, word in enumerate(words):
        (root / word).mkdir(parents=True, exist_ok=True)
        tone = 0.3 * np.sin(2 * np.pi * (200.0 + 40.0 * word_index) * time)
        for part, ids in speakers.items():
            for speaker in ids:
                for take in range(takes):
                    name = f"{speaker}_nohash_{take}.wav"
                    clip = tone + 0.01 * rng.standard_normal(samples)
                    soundfile.write(str(root / word / name), clip.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
                    if part in lists:
                        lists[part].append(f"{word}/{name}")
    (root / NOISE_FOLDER).mkdir(parents=True, exist_ok=True)
    for name in ("doing_the_dishes", "dude_miaowing", "exercise_bike", "pink_noise", "running_tap", "white_noise"):
        noise = 0.1 * rng.standard_normal(int(noise_seconds * SAMPLE_RATE))
        soundfile.write(str(root / NOISE_FOLDER / f"{name}.wav"), noise.astype(np.float32), SAMPLE_RATE,
                        subtype="PCM_16")
    write_text(root / "validation_list.txt", "".join(f"{entry}\n" for entry in sorted(lists["val"])))
    write_text(root / "testing_list.txt", "".join(f"{entry}\n" for entry in sorted(lists["test"])))
    return speakers
