"""Synthetic voices: a dataset's words spoken by a speech synthesiser, as extra training recordings.

A speaker-independent model needs many voices, and FSDD has six. A formant synthesiser
(espeak-ng, ``apt-get install espeak-ng``) speaks each class word in as many voices as asked:
each voice a seeded draw of an English accent, a voice variant (espeak-ng's ``+m1`` ... ``+f5``,
``+klatt`` ...), a pitch (0-99) and a speed (words per minute). The recordings are written as
``OUT/<label>_<voice>_0.wav`` at the dataset's sample rate with ``OUT/manifest.csv`` (path, label,
speaker), which ``data.extra_train`` adds to the training split only (:mod:`scnn.data.prepare`):
they are never validation or test recordings, so every accuracy stays one on real voices.

    python -m scnn.data.synthetic --out DIR --voices 200 --seed 0         # FSDD's digits
    python -m scnn.data.synthetic --out DIR --words yes=yes,no=no --voices 50
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

DIGIT_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
               "7": "seven", "8": "eight", "9": "nine"}
# espeak-ng's English voices (formant synthesis; the MBROLA voices need non-free data and are left out).
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "klatt4", "croak", "whisper")


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: espeak-ng accent and variant, pitch 0-99, speed in words per minute."""

    name: str
    accent: str
    variant: str
    pitch: int
    speed: int

    def arguments(self) -> list[str]:
        return ["-v", f"{self.accent}+{self.variant}", "-p", str(self.pitch), "-s", str(self.speed)]


def draw_voices(count: int, seed: int, pitch: tuple[int, int] = (20, 80), speed: tuple[int, int] = (110, 200),
                variants: tuple[str, ...] = VARIANTS) -> list[Voice]:
    """``count`` voices, each a seeded uniform draw of accent, variant, pitch and speed (inclusive ranges)."""
    if count < 1:
        raise ValueError(f"voices must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    return [Voice(f"synth{seed}v{number:04d}", str(rng.choice(ACCENTS)), str(rng.choice(variants)),
                  int(rng.integers(pitch[0], pitch[1] + 1)), int(rng.integers(speed[0], speed[1] + 1)))
            for number in range(count)]


def espeak(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng in ``voice``: (float32 waveform [samples], sample rate in Hz)."""
    import soundfile

    program = shutil.which("espeak-ng")
    if program is None:
        raise FileNotFoundError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    result = subprocess.run([program, *voice.arguments(), "--stdout", text], capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"espeak-ng {' '.join(voice.arguments())} failed on {text!r}: "
                           f"{result.stderr.decode(errors='replace').strip() or 'no audio'}")
    audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
    return audio, rate


def parse_words(text: str | None) -> dict[str, str]:
    """``"0=zero,1=one"`` -> {label: word}; None: FSDD's digits."""
    if not text:
        return dict(DIGIT_WORDS)
    words = {}
    for item in text.split(","):
        label, _, word = item.partition("=")
        if not label.strip() or not word.strip():
            raise ValueError(f"--words: {item!r} is not LABEL=WORD")
        words[label.strip()] = word.strip()
    return words


def synthesize(out_dir: str | Path, voices: list[Voice], words: dict[str, str], sample_rate: int = 8000,
               speak: Callable[[str, Voice], tuple[np.ndarray, int]] = espeak) -> Path:
    """Write every word in every voice to ``out_dir`` at ``sample_rate`` Hz, peak-normalised to 0.5,
    and ``out_dir/manifest.csv`` (path, label, speaker; written last, through a temporary file).
    Returns the manifest's path. ``speak(text, voice) -> (waveform, rate)`` is the synthesiser."""
    import librosa
    import soundfile

    from scnn.io import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for voice in voices:
        for label, word in words.items():
            audio, rate = speak(word, voice)
            if rate != sample_rate:
                audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate)
            peak = float(np.abs(audio).max())
            if peak == 0.0:
                raise RuntimeError(f"the synthesiser returned silence for {word!r} in voice {voice}")
            path = out_dir / f"{label}_{voice.name}_0.wav"
            soundfile.write(path, (0.5 * audio / peak).astype(np.float32), sample_rate, subtype="PCM_16")
            rows.append({"path": path.name, "label": label, "speaker": voice.name})
    manifest = out_dir / "manifest.csv"
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["path", "label", "speaker"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(manifest, text.getvalue())
    return manifest


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m scnn.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the recordings and manifest.csv")
    parser.add_argument("--voices", type=int, default=200, help="synthetic speakers (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the voices' draw")
    parser.add_argument("--words", help="LABEL=WORD,... (default: FSDD's digits 0=zero ... 9=nine)")
    parser.add_argument("--sample-rate", type=int, default=8000, help="Hz of the written files (default 8000)")
    args = parser.parse_args(argv)
    if args.voices < 1 or args.sample_rate < 1:
        parser.error("--voices and --sample-rate must be positive")
    manifest = synthesize(args.out, draw_voices(args.voices, args.seed), parse_words(args.words), args.sample_rate)
    print(f"wrote {manifest}")
    return manifest


if __name__ == "__main__":
    main()
