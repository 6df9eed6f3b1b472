"""Accuracy of a checkpoint against SNR: its test recordings with noise mixed in.

For each test recording (the checkpoint's own split, read as waveforms), each noise kind and
each SNR: the noise (:mod:`scnn.features.noise`) is mixed into the recording as read, before the
silence trim, at exactly that SNR over the whole recording; the features are then computed with
the checkpoint's feature config and normalised with its normaliser, as at training time. The
noise of a recording and kind is drawn once (seeded by ``seed``, the kind and the recording's
row) and only scaled across SNRs, so that the accuracy-against-SNR curve varies the level alone.
Babble for a recording mixes other test recordings (never itself).

``part="val"`` does the same on the checkpoint's validation recordings (files ``noise_val.*``): the
way to choose between noise-robust recipes without looking at the test set, whose clean validation
accuracy is often saturated (1.0 on FSDD's official split).
"""

from __future__ import annotations

import time
import zlib
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from scnn.data.prepare import checkpoint_data
from scnn.features.mfcc import load_audio, waveform_to_mfcc
from scnn.features.noise import NOISE_KINDS, make_noise, measure_snr, mix_at_snr
from scnn.io import write_json
from scnn.result_tables import write_table
from scnn.train.config import resolve_device
from scnn.train.evaluate import evaluate, load_trained_model
from scnn.train.run import library_versions


def parse_noise_kinds(text: str | Sequence[str]) -> list[str]:
    """``"white,pink,babble"`` (or a list) -> kinds, checked against :data:`NOISE_KINDS`."""
    kinds = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    unknown = [k for k in kinds if k not in NOISE_KINDS]
    if not kinds or unknown:
        raise ValueError(f"--noise: unknown noise kind(s) {unknown or text!r}; choose from {', '.join(NOISE_KINDS)}")
    return list(dict.fromkeys(kinds))


def parse_snrs(text: str | Sequence[float]) -> list[float]:
    """``"20,10,5,0"`` (or a list) -> SNRs in dB (finite numbers)."""
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except ValueError:
        raise ValueError(f"--snr: expected comma-separated numbers of dB such as 20,10,5,0; got {text!r}") from None
    if not values or not all(np.isfinite(values)):
        raise ValueError(f"--snr: expected finite numbers of dB such as 20,10,5,0; got {text!r}")
    return list(dict.fromkeys(values))


def noisy_features(waveforms: list[np.ndarray], kind: str, snr_db: float, feature_config, normalise: Callable,
                   seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Normalised features ``[N, 1, rows, frames]`` of ``waveforms`` with ``kind`` noise at ``snr_db``,
    and the SNR each mixture actually has (dB, measured). normalise: ``[N, rows, frames]`` extracted ->
    ``[N, 1, rows, frames]`` normalised (:meth:`scnn.data.PreparedData.normalise`)."""
    kind_key = zlib.crc32(kind.encode())  # stable across Python runs, unlike hash()
    features, measured = [], []
    for row, waveform in enumerate(waveforms):
        rng = np.random.default_rng([seed, kind_key, row])
        others = [w for other, w in enumerate(waveforms) if other != row] if kind == "babble" else None
        noise = make_noise(kind, waveform.size, rng, others)
        noisy = mix_at_snr(waveform, noise, snr_db)
        measured.append(measure_snr(waveform, noisy))
        features.append(waveform_to_mfcc(noisy, feature_config))
    raw = np.stack(features) if features else np.zeros((0, *feature_config.shape), np.float32)
    return normalise(raw), measured


def noise_evaluation(checkpoint: str | Path, out_dir: str | Path, kinds: Sequence[str] = ("white",),
                     snrs: Sequence[float] = (20, 10, 5, 0), seed: int = 0, data_overrides: dict | None = None,
                     device: str = "auto", progress: bool = False, part: str = "test") -> list[dict]:
    """Accuracy of ``checkpoint`` on its test (or, ``part="val"``, validation) recordings, clean and with
    each noise kind at each SNR.

    Writes into ``out_dir``: ``noise.csv`` / ``noise.json`` (table ``noise``, docs/results_formats.md),
    ``noise.png`` (accuracy against SNR, one line per kind, the clean accuracy dashed) and
    ``noise_results.json`` (the rows and the settings); ``noise_val.*`` for the validation part (its
    rows' ``num_test`` counts validation recordings). Returns the rows; the first is the clean one
    (noise "none", computed through the same waveform path as the noisy ones).
    """
    if part not in ("test", "val"):
        raise ValueError(f"noise evaluation: part must be 'test' or 'val', got {part!r}")
    from scnn.viz.plots import plot_noise_accuracy

    kinds, snrs = parse_noise_kinds(kinds), parse_snrs(snrs)
    model, saved = load_trained_model(checkpoint, resolve_device(device))
    data = checkpoint_data(saved, data_overrides, progress)
    config = data.feature_config
    if config.representation not in ("mfcc", "logmel"):
        raise ValueError(f"checkpoint {checkpoint}: noise evaluation needs MFCC or log-mel features, "
                         f"not {config.representation!r}")
    _, labels, files, _ = data.part(part)
    if not files:
        raise ValueError(f"checkpoint {checkpoint}: no {'validation' if part == 'val' else 'test'} recordings "
                         f"found in {data.data_dir}")
    waveforms = [load_audio(path, config.sample_rate) for path in files]
    classes = len(data.class_names)
    start = time.perf_counter()

    def row(kind, snr_db, x, measured):
        result = evaluate(model, x, labels, num_classes=classes)
        return {"checkpoint": str(checkpoint), "noise": kind, "snr_db": snr_db, "accuracy": result["accuracy"],
                "num_test": len(labels), "seed": seed,
                "measured_snr_db_min": min(measured) if measured else None,
                "measured_snr_db_max": max(measured) if measured else None}

    normalise = partial(data.normalise, part=part)
    clean = normalise(np.stack([waveform_to_mfcc(w, config) for w in waveforms]))
    rows = [row("none", None, clean, [])]
    for kind in kinds:
        for snr_db in snrs:
            x, measured = noisy_features(waveforms, kind, snr_db, config, normalise, seed)
            rows.append(row(kind, snr_db, x, measured))
            if progress:
                print(f"{kind:>6} {snr_db:5.1f} dB: accuracy {rows[-1]['accuracy']:.4f}")
    out_dir, stem = Path(out_dir), "noise" if part == "test" else "noise_val"
    write_table(rows, out_dir / f"{stem}.csv", "noise",
                metadata={"checkpoint": str(checkpoint), "kinds": kinds, "snrs_db": snrs, "seed": seed, "part": part})
    plot_noise_accuracy(rows, out_dir / f"{stem}.png",
                        title=f"{Path(checkpoint).name}: accuracy in noise ({'validation' if part == 'val' else 'test'})")
    write_json(out_dir / f"{stem}_results.json", {
        "kind": "noise_evaluation", "part": part, "checkpoint": str(checkpoint), "rows": rows, "seed": seed,
        "test_set_digest": data.test_set.get("digest"), "wall_time_s": time.perf_counter() - start,
        "versions": library_versions()})
    return rows
