"""Test-time warp averaging: a checkpoint's class probabilities averaged over frequency warps of its input.

A voice the model never heard differs from the training voices most in where its formants lie (vocal
tract length). VTLP (:func:`scnn.features.wave_augment.vtlp_warp`, Jaitly & Hinton 2013) warps the
frequency axis of each training sample by a random factor; at test time the same warp can be applied
to every recording at each factor of a fixed grid ``1 - spread .. 1 + spread`` and the model's class
probabilities (softmax of its logits) averaged over the grid: a test-time augmentation that asks no
labels and no choice per speaker. It costs one forward pass per factor (11 for spread 0.1, step 0.02).

Every factor's features, the plain one (factor 1) included, are computed by the torch front end
(:class:`scnn.features.torch_mfcc.TorchMFCC`, the one waveform augmentation trains with) from the
recordings as read, and normalised as the checkpoint's data are (:meth:`scnn.data.PreparedData.normalise`:
the speaker statistics of ``data.speaker_norm`` are taken from each factor's own features).

A warp per speaker chosen by the model's confidence (maximum-likelihood VTLN on its own first-pass
hypotheses) was tried on Model B's leave-one-speaker-out folds and lost on validation (README).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from scnn.data.prepare import PreparedData, checkpoint_data, checkpoint_features
from scnn.features.torch_mfcc import TorchMFCC, fitted_batch, load_recordings
from scnn.features.wave_augment import vtlp_matrices
from scnn.io import write_json
from scnn.train.config import resolve_device
from scnn.train.evaluate import load_trained_model, write_predictions
from scnn.train.run import library_versions

MAX_SPREAD = 0.3  # beyond +-30 % a warp no longer resembles another adult voice


def warp_factors(spread: float, step: float = 0.02) -> list[float]:
    """The grid ``1 - spread, ..., 1, ..., 1 + spread`` in steps of ``step`` (symmetric, 1 included).

    ValueError naming the option when ``spread`` is not in (0, 0.3] or ``step`` not in (0, spread]."""
    if not 0 < spread <= MAX_SPREAD:
        raise ValueError(f"--warp-average must be in (0, {MAX_SPREAD}], got {spread}")
    if not 0 < step <= spread:
        raise ValueError(f"--warp-step must be in (0, --warp-average={spread}], got {step}")
    count = int(np.floor(spread / step + 1e-9))
    return [round(1.0 + k * step, 6) for k in range(-count, count + 1)]


def check_audio_front_end(checkpoint: str | Path, config) -> None:
    """ValueError naming ``checkpoint`` unless its features (``FeatureConfig``) can be computed from audio by
    the torch front end (MFCC or log-mel with the centre fit, causal MFCCs): warps act on a spectrum."""
    from scnn.features.torch_mfcc import check_supported

    try:
        check_supported(config)
    except ValueError:
        raise ValueError(f"checkpoint {checkpoint}: warp averaging and self-training compute features from the audio "
                         f"(MFCC or log-mel with fit='center', or causal MFCCs); its features are "
                         f"representation={config.representation!r}, fit={config.fit!r}") from None


def warped_log_probabilities(model: nn.Module, waveforms: torch.Tensor, data: PreparedData, part: str,
                             factor: float, batch_size: int = 256) -> torch.Tensor:
    """``log softmax`` of the model's logits ``[N, classes]`` for ``waveforms`` (fitted, ``[N, samples]``,
    the rows of ``part``: "val" or "test") warped by ``factor`` (1: unwarped) before the mel filterbank."""
    front = TorchMFCC(data.feature_config)
    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for start in range(0, len(waveforms), batch_size):
            batch = waveforms[start:start + batch_size]
            warp = vtlp_matrices(torch.tensor([factor]), data.feature_config.n_fft).expand(len(batch), -1, -1)
            rows.append(front(batch, warp).numpy())
        x = data.normalise(np.concatenate(rows), part)
        logits = [model(x[start:start + batch_size].to(device)).logits for start in range(0, len(x), batch_size)]
    return torch.log_softmax(torch.cat(logits).float().cpu(), dim=1)


def warp_averaged_probabilities(model: nn.Module, data: PreparedData, part: str, factors: Sequence[float],
                                waveforms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(plain probabilities ``[N, classes]`` at factor 1, probabilities averaged over ``factors``) for the
    recordings of ``part`` ("val" or "test") of ``data``; waveforms: those recordings fitted
    (:func:`scnn.features.torch_mfcc.fitted_batch`, ``[N, samples]``), read here when None."""
    if waveforms is None:
        waveforms = fitted_batch(load_recordings(data.part(part).files, data.feature_config), data.feature_config)
    plain = warped_log_probabilities(model, waveforms, data, part, 1.0).exp()
    total = torch.zeros_like(plain)
    for factor in factors:
        total += plain if factor == 1.0 else warped_log_probabilities(model, waveforms, data, part, factor).exp()
    return plain, total / len(factors)


def warp_average_evaluation(checkpoint: str | Path, out_dir: str | Path, spread: float = 0.1, step: float = 0.02,
                            data_overrides: dict | None = None, device: str = "auto",
                            parts: Sequence[str] = ("val", "test")) -> dict:
    """Accuracy of ``checkpoint`` on its validation and test recordings, plain (torch front end, factor 1)
    and averaged over :func:`warp_factors` ``(spread, step)``.

    Writes ``out_dir/warp_average.json`` (``parts: {part: {"plain_accuracy", "warp_average_accuracy",
    "num"}}``, the factors, the checkpoint) and ``out_dir/predictions_warp_average.csv`` (the test
    recordings' averaged predictions, the columns of ``predictions.csv``, each score the averaged
    probability); returns the JSON's contents. A part with no
    recordings is left out; ValueError if none has any.
    """
    factors = warp_factors(spread, step)
    model, saved = load_trained_model(checkpoint, resolve_device(device))
    check_audio_front_end(checkpoint, checkpoint_features(saved))
    data = checkpoint_data(saved, data_overrides)
    start = time.perf_counter()
    results = {"kind": "warp_average", "checkpoint": str(checkpoint), "spread": spread, "step": step,
               "factors": factors, "parts": {}}
    out_dir = Path(out_dir)
    for part in parts:
        labels = data.part(part).y
        if len(labels) == 0:
            continue
        plain, averaged = warp_averaged_probabilities(model, data, part, factors)
        results["parts"][part] = {
            "plain_accuracy": float((plain.argmax(1) == labels).float().mean()),
            "warp_average_accuracy": float((averaged.argmax(1) == labels).float().mean()),
            "num": len(labels)}
        if part == "test":
            write_predictions(out_dir / "predictions_warp_average.csv", data.test_files, labels, averaged.argmax(1),
                              averaged, data.class_names)
    if not results["parts"]:
        raise ValueError(f"checkpoint {checkpoint}: no {' or '.join(parts)} recordings found in {data.data_dir}")
    results.update(wall_time_s=time.perf_counter() - start, versions=library_versions())
    write_json(out_dir / "warp_average.json", results)
    return results
