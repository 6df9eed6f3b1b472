"""Google Speech Commands v2 (Warden 2018): 105,829 one-second 16 kHz clips of 35 words.

The release unpacks to one folder::

    root/<word>/<speaker>_nohash_<n>.wav     35 word folders
    root/_background_noise_/*.wav            six long noise recordings (no word)
    root/validation_list.txt                 "<word>/<file>.wav" per line: the official validation part
    root/testing_list.txt                    the same for the test part; every other clip is train

The lists were drawn by hashing the speaker ID (:func:`official_part_of`), so the official parts
are speaker-disjoint. Two protocols are registered:

``speech_commands`` (35 classes)
    every word its own class, sorted by name; NeuroBench's keyword-spotting task uses these.
``speech_commands_12`` (12 classes)
    TensorFlow's ``input_data.py`` protocol: ``_silence_``, ``_unknown_``, then the ten words
    yes, no, up, down, left, right, on, off, stop, go. In each official part the other 25 words
    are ``_unknown_``, subsampled (seeded) to ``ceil(10 %)`` of that part's ten-word clips, and
    ``_silence_`` gets as many one-second clips cut from ``_background_noise_`` at a seeded offset
    and volume (uniform in [0, 1]). The clips are written once as wavs under the cache folder
    (``<cache>/speech_commands_silence/<key>/``, atomically), so the feature pipeline reads them as
    any other file. TensorFlow's own validation and test silence is all zeros; ours is scaled
    noise, which is harder, so a 12-class accuracy here is not directly comparable with numbers
    that used zeros.

:func:`background_noise_files` lists ``_background_noise_`` for noise augmentation.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import numpy as np

from scnn.data.download import DownloadError, download_file, unpack_tar
from scnn.data.registry import DatasetListing, Recording, default_cache_dir, register_dataset
from scnn.io import atomic_write, describe_problems

SPEECH_COMMANDS_ENV_VAR = "SCNN_SPEECH_COMMANDS_DIR"
SPEECH_COMMANDS_URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
# torchaudio's pinned digest of this archive (torchaudio/datasets/speechcommands.py, _CHECKSUMS); not
# re-measured here, where the archive cannot be downloaded.
SPEECH_COMMANDS_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
WORDS_35 = ("backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
            "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
            "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero")
WORDS_10 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
CLASSES_12 = (SILENCE, UNKNOWN) + WORDS_10
NOISE_FOLDER = "_background_noise_"
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000  # one second
FILE_PATTERN = re.compile(r"^(?P<speaker>[0-9a-f]+)_nohash_(?P<index>\d+)\.wav$")
PARTS = {"validation_list.txt": "val", "testing_list.txt": "test"}

_MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1  # the release README's constant


def official_part_of(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """"train", "val" or "test": the release README's ``which_set``, a hash of the speaker ID.

    Every clip of one speaker falls in the same part; the list files shipped with v2 were made with it.
    """
    speaker = re.sub(r"_nohash_.*$", "", os.path.basename(filename))
    hashed = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    percentage = (hashed % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "val"
    if percentage < validation_percentage + testing_percentage:
        return "test"
    return "train"


def locate_speech_commands(data_dir: str | Path | None = None, download: bool = True, url: str = SPEECH_COMMANDS_URL,
                           sha256: str = SPEECH_COMMANDS_SHA256, progress: bool = True) -> Path:
    """The unpacked release: ``data_dir``, else ``$SCNN_SPEECH_COMMANDS_DIR``, else the cache
    ``<user cache>/scnn/speech_commands_v0.02`` (downloaded and unpacked there if absent and ``download``).

    The folder must hold both list files. A folder given by argument or environment is never downloaded into.
    """
    how_to = (f"pass --data-dir DIR (the unpacked speech_commands_v0.02.tar.gz: word folders, _background_noise_, "
              f"validation_list.txt, testing_list.txt) or set {SPEECH_COMMANDS_ENV_VAR}=DIR")
    where = data_dir or os.environ.get(SPEECH_COMMANDS_ENV_VAR)
    if where:
        root = Path(where).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"Speech Commands folder {root} does not exist; {how_to}")
    else:
        root = default_cache_dir() / "speech_commands_v0.02"
        if not root.is_dir():
            if not download:
                raise FileNotFoundError(f"Speech Commands not found in the cache {root} and downloading is off; {how_to}")
            try:
                download_speech_commands(root, url=url, sha256=sha256, progress=progress)
            except DownloadError as error:
                raise DownloadError(f"{error}; to use a copy you already have, {how_to}") from error
    missing = [name for name in PARTS if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Speech Commands folder {root} lacks {' and '.join(missing)} "
                                "(the official split); is it the unpacked v0.02 release?")
    return root


def download_speech_commands(dest: str | Path, url: str = SPEECH_COMMANDS_URL, sha256: str = SPEECH_COMMANDS_SHA256,
                             progress: bool = True) -> Path:
    """Fetch the release archive (2.3 GB; SHA-256 checked, resumed after an interruption), unpack it into
    ``dest`` atomically, then delete the archive."""
    dest = Path(dest)
    archive = download_file(url, dest.with_name(dest.name + ".tar.gz"), sha256, what="Speech Commands v0.02",
                            progress=progress)
    unpack_tar(archive, dest, "Speech Commands v0.02")
    archive.unlink()
    return dest


def background_noise_files(root: str | Path) -> list[Path]:
    """The ``_background_noise_/*.wav`` recordings (sorted), for silence clips and noise augmentation."""
    folder = Path(root) / NOISE_FOLDER
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{folder}: no background noise wavs (needed for the 12-class protocol's silence)")
    return files


def _read_list(root: Path, name: str, problems: list) -> set[str]:
    """Entries of one list file as "word/file.wav"; entries naming no file go to ``problems``."""
    entries = set()
    for number, line in enumerate((root / name).read_text().splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        if not (root / entry).is_file():
            problems.append((f"{name}:{number}", f"lists {entry}, which does not exist"))
        entries.add(entry)
    return entries


def scan_speech_commands(root: str | Path) -> tuple[list[Recording], list[tuple[str, str]]]:
    """Every word clip with label = index in :data:`WORDS_35`, its speaker and official part.

    Returns (recordings, skipped): skipped holds (path, reason) of files not named
    ``<speaker>_nohash_<n>.wav`` and of extra folders. A missing word folder, or list entries
    that name no file, raise ValueError naming all of them.
    """
    root = Path(root)
    missing = [word for word in WORDS_35 if not (root / word).is_dir()]
    if missing:
        raise ValueError(f"Speech Commands folder {root} lacks {len(missing)} of the 35 v2 word folders: "
                         f"{', '.join(missing)}")
    problems: list[tuple[str, str]] = []
    part_of = {}
    for list_name, part in PARTS.items():
        for entry in _read_list(root, list_name, problems):
            part_of[entry] = part
    if problems:
        raise ValueError(f"Speech Commands folder {root}: {describe_problems(problems)}")
    skipped = [(str(path), "not a Speech Commands v2 word folder") for path in sorted(root.iterdir())
               if path.is_dir() and path.name not in WORDS_35 and path.name != NOISE_FOLDER
               and not path.name.startswith(".")]
    recordings = []
    for label, word in enumerate(WORDS_35):
        for path in sorted((root / word).iterdir()):
            if path.suffix.lower() != ".wav":
                continue
            match = FILE_PATTERN.match(path.name)
            if match is None:
                skipped.append((str(path), "name is not <speaker>_nohash_<n>.wav"))
                continue
            recordings.append(Recording(path, label, speaker=match["speaker"], take=int(match["index"]),
                                        official_part=part_of.get(f"{word}/{path.name}", "train")))
    return recordings, skipped


def silence_clips(noise_files: list[Path], counts: dict[str, int], out_dir: str | Path, seed: int = 0
                  ) -> dict[str, list[Path]]:
    """Write ``counts[part]`` one-second silence clips per part from the noise files; their paths per part.

    Clip i of a part is a random noise file, a random one-second window of it and a random volume in
    [0, 1], drawn from ``seed`` and the part. The folder is keyed by the noise files' content, the seed and
    the counts, so a changed input writes a new set; files already there are reused.
    """
    import soundfile

    key = hashlib.sha256()
    for path in noise_files:
        key.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    key.update(f"{seed}:{sorted(counts.items())}:{SAMPLE_RATE}".encode())
    folder = Path(out_dir) / key.hexdigest()[:16]
    noises = None
    clips: dict[str, list[Path]] = {}
    for part_index, part in enumerate(sorted(counts)):
        rng = np.random.default_rng([seed, part_index])
        clips[part] = []
        for index in range(counts[part]):
            choice, offset_draw, volume = rng.integers(len(noise_files)), rng.random(), rng.random()
            path = folder / f"{part}_silence_{index:05d}.wav"
            clips[part].append(path)
            if path.exists():
                continue
            if noises is None:
                noises = [_read_mono(file) for file in noise_files]
            noise = noises[choice]
            start = int(offset_draw * max(len(noise) - CLIP_SAMPLES, 0))
            clip = np.zeros(CLIP_SAMPLES, np.float32)
            window = noise[start:start + CLIP_SAMPLES]
            clip[:len(window)] = window * volume
            atomic_write(path, lambda handle: soundfile.write(handle, clip, SAMPLE_RATE, format="WAV",
                                                              subtype="PCM_16"))
    return clips


def _read_mono(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: background noise at {rate} Hz; the release's are {SAMPLE_RATE} Hz")
    return audio.mean(axis=1)


def twelve_class_recordings(recordings: list[Recording], noise_files: list[Path], silence_dir: str | Path,
                            seed: int = 0, unknown_fraction: float = 0.1, silence_fraction: float = 0.1
                            ) -> list[Recording]:
    """The 12-class protocol from the 35-word ``recordings`` (labels index :data:`CLASSES_12`).

    Per official part: the ten words keep their clips; the other words become ``_unknown_``, of which
    ``ceil(unknown_fraction * ten-word clips)`` are kept (seeded); ``ceil(silence_fraction * ten-word
    clips)`` silence clips are added (:func:`silence_clips`).
    """
    known = {WORDS_35.index(word): CLASSES_12.index(word) for word in WORDS_10}
    result, counts = [], {}
    for part_index, part in enumerate(("train", "val", "test")):
        members = [r for r in recordings if r.official_part == part]
        words = [Recording(r.path, known[r.label], r.speaker, r.take, part) for r in members if r.label in known]
        others = sorted((r for r in members if r.label not in known), key=lambda r: str(r.path))
        keep = min(len(others), math.ceil(unknown_fraction * len(words)))
        chosen = np.random.default_rng([seed, 1000 + part_index]).permutation(len(others))[:keep]
        unknown = [Recording(others[i].path, CLASSES_12.index(UNKNOWN), others[i].speaker, others[i].take, part)
                   for i in sorted(chosen)]
        result += words + unknown
        counts[part] = math.ceil(silence_fraction * len(words))
    for part, paths in silence_clips(noise_files, counts, silence_dir, seed).items():
        # Silence has no speaker: None keeps it out of speaker holdouts' speaker lists.
        result += [Recording(path, CLASSES_12.index(SILENCE), None, None, part) for path in paths]
    return result


@register_dataset("speech_commands")
def speech_commands_listing(config) -> DatasetListing:
    """The 35-word protocol from ``config.data_dir`` / ``$SCNN_SPEECH_COMMANDS_DIR``."""
    root = locate_speech_commands(config.data_dir, download=config.download)
    recordings, skipped = scan_speech_commands(root)
    return DatasetListing(recordings, list(WORDS_35), root, skipped=skipped)


@register_dataset("speech_commands_12")
def speech_commands_12_listing(config) -> DatasetListing:
    """The 12-class protocol (silence, unknown, ten words); silence clips cached beside the features."""
    root = locate_speech_commands(config.data_dir, download=config.download)
    recordings, skipped = scan_speech_commands(root)
    base = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    recordings = twelve_class_recordings(recordings, background_noise_files(root), base / "speech_commands_silence",
                                         seed=config.split_seed)
    return DatasetListing(recordings, list(CLASSES_12), root, skipped=skipped)
