"""An MFCC front end in torch, for features computed per training batch (waveform augmentation).

It computes what :func:`scnn.features.mfcc.waveform_to_mfcc` computes with librosa, from the
waveform after the silence trim, the level and the centre fit (:func:`fitted_waveform`, done once
per recording): centred STFT (periodic Hann window, zero padding), power, librosa's mel filterbank
(Slaney), ``10 log10`` floored at ``1e-10`` and at ``dynamic_range_db`` (80) dB below each recording's peak (librosa's
``power_to_db``), DCT-II with orthonormal scaling, zero rows up to ``num_rows``.
``tests/test_robust.py`` states the agreement with librosa on FSDD recordings.
Supported: ``representation="mfcc"`` or ``"logmel"`` (no DCT) with ``fit="center"`` (the default preset), and
``"causal_mfcc"`` (:mod:`scnn.features.causal`: left-padded uncentred STFT, no clip, the optional
running level reference and running cepstral mean), so streaming models train with waveform
augmentation too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from scnn.features.causal import mean_start
from scnn.features.mfcc import FeatureConfig, _fit_length, normalize_level


def check_supported(config: FeatureConfig) -> None:
    if config.representation == "causal_mfcc":
        return
    if config.representation not in ("mfcc", "logmel") or config.fit != "center":
        raise ValueError("waveform augmentation needs MFCC or log-mel features with fit='center' (the default preset) or "
                         f"causal MFCCs; got representation={config.representation!r}, fit={config.fit!r}")


def fitted_length(config: FeatureConfig) -> int:
    """Samples of a fitted waveform: a centred STFT of it (a causal one: of it after n_fft - hop zeros)
    has exactly ``num_frames`` frames."""
    if config.representation == "causal_mfcc":
        return config.num_frames * config.hop_length
    return (config.num_frames - 1) * config.hop_length


def fitted_waveform(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``waveform [samples]`` trimmed, levelled and centre-fitted as :func:`waveform_to_mfcc` does
    before its STFT: float32 ``[fitted_length(config)]``."""
    import librosa

    check_supported(config)
    if config.top_db is not None and waveform.size > 0:  # None for causal MFCCs
        waveform, _ = librosa.effects.trim(waveform, top_db=config.top_db)
    waveform = normalize_level(waveform, config.level)
    return _fit_length(waveform, fitted_length(config)).astype(np.float32)


class TorchMFCC(nn.Module):
    """``[B, fitted_length]`` waveforms -> MFCC ``[B, rows, num_frames]`` (un-normalised, float32)."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        import librosa
        from scipy.fft import dct

        check_supported(config)
        self.config = config
        mel = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels)
        dct_matrix = dct(np.eye(config.n_mels), type=2, norm="ortho", axis=0)[: config.n_mfcc]
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel.astype(np.float32)), persistent=False)       # [mels, bins]
        self.register_buffer("dct", torch.from_numpy(dct_matrix.astype(np.float32)), persistent=False)  # [mfcc, mels]

    def forward(self, waveform: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        """warp: optional per-sample maps ``[B, bins, bins]`` applied to the power spectrum before the mel
        filterbank (vocal-tract-length perturbation, :func:`scnn.features.wave_augment.vtlp_matrices`)."""
        config = self.config
        causal = config.representation == "causal_mfcc"
        if causal:  # frame t = the n_fft samples ending at audio sample (t + 1) * hop
            waveform = nn.functional.pad(waveform, (config.n_fft - config.hop_length, 0))
        spectrum = torch.stft(waveform, config.n_fft, config.hop_length, window=self.window, center=not causal,
                              pad_mode="constant", return_complex=True)                         # [B, bins, frames]
        power = spectrum.real.square() + spectrum.imag.square()
        if warp is not None:
            power = warp.to(power.device) @ power
        decibels = 10.0 * torch.log10((self.mel @ power).clamp(min=1e-10))                      # [B, mels, frames]
        frame_loudest = decibels.amax(dim=1)                                                      # L[t] [B, frames]
        loudest = None
        if not causal:
            peak = decibels.amax(dim=(1, 2), keepdim=True)
            decibels = torch.maximum(decibels, peak - config.dynamic_range_db)
        elif config.peak_range_db is not None:
            loudest = frame_loudest.cummax(dim=1).values                                          # R[t] [B, frames]
            decibels = torch.clamp(decibels - loudest[:, None, :], min=-config.peak_range_db)
        if config.representation == "logmel":
            mfcc = decibels                                                                      # [B, mels, frames]
        else:
            mfcc = self.dct @ decibels                                                           # [B, mfcc, frames]
        if causal and config.running_mean_frames:
            gate = None if config.mean_gate_db is None else (frame_loudest, loudest, config.mean_gate_db)
            weight, total = mean_start(config.mean_prior_frames, config.mean_prior, config.n_mfcc)
            initial = (weight, torch.from_numpy(total).to(mfcc.dtype).to(mfcc.device))
            mfcc = running_mean_removed(mfcc, config.running_mean_frames, gate, initial)
        return nn.functional.pad(mfcc, (0, 0, 0, config.shape[0] - mfcc.shape[1]))


def running_mean_removed(mfcc: torch.Tensor, time_constant: float,
                         gate: tuple[torch.Tensor, torch.Tensor, float] | None = None,
                         initial: tuple[float, torch.Tensor] | None = None) -> torch.Tensor:
    """``mfcc [B, rows, frames]`` minus the bias-corrected exponentially weighted mean of the frames so
    far (:mod:`scnn.features.causal`, running cepstral mean normalisation).

    gate: (L [B, frames] each frame's loudest bin in dB, R [B, frames] the loudest so far, g in dB): the
    speech-gated mean with restarts of :mod:`scnn.features.causal` (``mean_gate_db``).
    initial: (W, S [rows]) the mean starts and starts over from (:func:`scnn.features.causal.mean_start`: k and
    k * m0 with a prior worth k frames, ``mean_prior_frames``); None: from nothing."""
    decay = 1.0 - 1.0 / time_constant
    batch = mfcc.shape[0]
    prior_total = torch.zeros_like(mfcc[..., 0])                                  # k * m0 [B, rows]
    prior_weight = torch.zeros(batch, 1, dtype=mfcc.dtype, device=mfcc.device)   # k [B, 1]
    if initial is not None:
        prior_total = prior_total + initial[1].to(mfcc.dtype)
        prior_weight = prior_weight + initial[0]
    total, weight = prior_total, prior_weight                                     # S [B, rows], W [B, 1]
    start = torch.full((batch,), -float("inf"), dtype=mfcc.dtype, device=mfcc.device)  # B [B]
    out = torch.empty_like(mfcc)
    for t in range(mfcc.shape[-1]):
        if gate is None:  # every frame updates the mean
            total = decay * total + mfcc[..., t]
            weight = decay * weight + 1.0
            out[..., t] = mfcc[..., t] - total / weight
            continue
        frame_loudest, loudest, threshold = gate
        restart = loudest[:, t] > start + threshold
        total = torch.where(restart[:, None], prior_total, total)
        weight = torch.where(restart[:, None], prior_weight, weight)
        start = torch.where(restart, loudest[:, t], start)
        heard = frame_loudest[:, t] >= loudest[:, t] - threshold
        total = torch.where(heard[:, None], decay * total + mfcc[..., t], total)
        weight = torch.where(heard[:, None], decay * weight + 1.0, weight)
        mean = torch.where(weight > 0, total / weight.clamp(min=1e-12), torch.zeros_like(total))
        out[..., t] = mfcc[..., t] - mean
    return out


def load_recordings(paths: list[str], config: FeatureConfig) -> list[torch.Tensor]:
    """Each file as read at ``config.sample_rate``: float32 ``[samples_i]`` (before the silence trim)."""
    from scnn.features.mfcc import load_audio

    check_supported(config)
    return [torch.from_numpy(np.asarray(load_audio(path, config.sample_rate), dtype=np.float32)) for path in paths]


def fitted_batch(recordings: list[torch.Tensor], config: FeatureConfig) -> torch.Tensor:
    """:func:`fitted_waveform` of each recording (1-D tensors, any lengths): float32 ``[B, fitted_length]``."""
    if not recordings:
        return torch.zeros(0, fitted_length(config))
    return torch.from_numpy(np.stack([fitted_waveform(row.numpy(), config) for row in recordings]))
