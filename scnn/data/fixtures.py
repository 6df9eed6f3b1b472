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


def write_tone(path: Path, frequency: float, seed: int = 0, seconds: float = 0.3, rate: int = 8000) -> Path:
    """A sine of ``frequency`` Hz at amplitude 0.3 with seeded white noise (std 0.01) as a WAV file
    (folders created); the recordings of the tests' toy datasets."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    soundfile.write(str(path), 0.3 * np.sin(2 * np.pi * frequency * t) + noise, rate)
    return path


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


def write_event_file(path: str | Path, times: list[np.ndarray], units: list[np.ndarray], labels: list[int],
                     speakers: list[int] | None = None, keys: list[str] | None = None) -> Path:
    """An HDF5 file with SHD's keys and dtypes: ``spikes/times`` variable-length float16 seconds,
    ``spikes/units`` variable-length uint16 channels, ``labels`` uint16, ``extra/speaker`` uint16 and
    ``extra/keys`` bytes where given."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        stored_times = handle.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        stored_units = handle.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for index, (t, u) in enumerate(zip(times, units)):
            stored_times[index] = np.asarray(t, np.float16)
            stored_units[index] = np.asarray(u, np.uint16)
        handle.create_dataset("labels", data=np.asarray(labels, np.uint16))
        if speakers is not None:
            handle.create_dataset("extra/speaker", data=np.asarray(speakers, np.uint16))
        if keys is not None:
            handle.create_dataset("extra/keys", data=np.asarray([k.encode() for k in keys]))
    return path


def random_events(generator: np.random.Generator, label: int, num_classes: int, spikes: int = 300,
                  duration: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One sample's (times sorted, units): spikes around a class-specific band of channels, so a
    classifier can learn the fixture (real samples hold about 5,000-15,000 spikes)."""
    centre = (label + 0.5) * 700 / num_classes
    units = np.clip(np.rint(generator.normal(centre, 700 / num_classes / 3, spikes)), 0, 699)
    times = np.sort(generator.uniform(0.0, duration, spikes))
    return times.astype(np.float32), units.astype(np.int64)


def write_heidelberg_files(root: str | Path, name: str = "shd", per_part: dict[str, int] | None = None,
                           num_classes: int | None = None, spikes: int = 300, seed: int = 0) -> dict[str, Path]:
    """The official files of SHD ("shd_train.h5", "shd_test.h5") or SSC (also "ssc_valid.h5") under
    ``root`` with ``per_part[part]`` random samples each (labels cycling through the classes, speakers
    0..9 for SHD, none for SSC). Returns the paths by part."""
    from scnn.data.heidelberg import FILES

    num_classes = num_classes or (20 if name == "shd" else 35)
    per_part = per_part or {part: 2 * num_classes for part in FILES[name]}
    generator = np.random.default_rng(seed)
    written = {}
    for part, file in FILES[name].items():
        labels = [i % num_classes for i in range(per_part[part])]
        samples = [random_events(generator, label, num_classes, spikes) for label in labels]
        speakers = [i % 10 for i in range(len(labels))] if name == "shd" else None
        written[part] = write_event_file(Path(root) / file, [t for t, _ in samples], [u for _, u in samples],
                                         labels, speakers, keys=[f"class{i}" for i in range(num_classes)])
    return written
