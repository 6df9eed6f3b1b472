"""Waveform augmentation of training batches: additive coloured noise at a random SNR, gain, speed,
vocal-tract-length perturbation.

Acts on the training recordings as read (before the silence trim, :func:`augment_recordings`), which
are then trimmed, levelled and centre-fitted (:func:`scnn.features.torch_mfcc.fitted_waveform`) and go
through the torch MFCC front end, where VTLP warps each sample's spectrum (:func:`vtlp_matrices`); every draw comes from one explicit
``torch.Generator`` (CPU), whose state the trainer checkpoints, so a seeded run and its resume see the
same augmentations.

speed: each sample is resampled (linear interpolation) by a factor drawn uniformly from
    [1 - speed, 1 + speed] (> 1 faster: shorter and higher, as tape speed), then centre-fitted back.
gain_db: each sample is scaled by a gain drawn uniformly in [-gain_db, gain_db] dB.
noise_prob: the share of samples that get noise; its colour is drawn from ``noise_colours`` (and, where
    ``recordings`` of real noise are given, "a recording" as one more equally likely choice: a random one,
    looped from a random offset) and its SNR uniformly from [snr_min, snr_max] dB, over the whole recording
    as read, as the noise evaluation (:mod:`scnn.train.noise_eval`) adds it: the trim then sees the noise.
vtlp: each sample's spectrum is warped by a factor drawn uniformly from [1 - vtlp, 1 + vtlp]
    (:func:`vtlp_warp`; Jaitly & Hinton 2013 used 0.9..1.1), a speaker-like change of formants that
    keeps the tempo.
"""

from __future__ import annotations

import numpy as np
import torch

from scnn.features.noise import COLOURS


def torch_coloured_noise(colours: list[int], length: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-RMS noise ``[len(colours), length]``: row i has power ~ 1/f^colours[i] (0 white, 1 pink, 2 brown)."""
    count = len(colours)
    bins = length // 2 + 1
    spectrum = torch.complex(torch.randn(count, bins, generator=generator), torch.randn(count, bins, generator=generator))
    frequency = torch.arange(bins, dtype=torch.float32).clamp(min=1.0)
    exponent = torch.tensor(colours, dtype=torch.float32).unsqueeze(1)
    spectrum = spectrum * frequency.unsqueeze(0) ** (-exponent / 2)
    spectrum[:, 0] = 0
    noise = torch.fft.irfft(spectrum, n=length)
    return noise / noise.square().mean(1, keepdim=True).sqrt()


def recording_noise(recordings: list[torch.Tensor], length: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-RMS ``[length]`` from one of ``recordings`` (1-D, non-silent), looped from a random offset."""
    chosen = recordings[int(torch.randint(0, len(recordings), (1,), generator=generator))]
    offset = int(torch.randint(0, chosen.numel(), (1,), generator=generator))
    looped = torch.roll(chosen, -offset).repeat(length // chosen.numel() + 1)[:length]
    looped = looped - looped.mean()
    return looped / looped.square().mean().sqrt().clamp(min=1e-12)


def load_noise_folder(folder: str, sample_rate: int) -> list[torch.Tensor]:
    """Every ``*.wav`` under ``folder`` (sorted, recursive) as mono float32 at ``sample_rate``; a missing or
    empty folder, or unreadable or silent files, raise one ValueError that names them all."""
    from pathlib import Path

    from scnn.features.mfcc import AudioFileError, load_audio

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"train.noise_dir: {folder} is not a folder")
    files = sorted(root.rglob("*.wav"))
    if not files:
        raise ValueError(f"train.noise_dir: no .wav files in {folder}")
    recordings, problems = [], []
    for path in files:
        try:
            audio = load_audio(path, sample_rate)
        except AudioFileError as error:
            problems.append(str(error))
            continue
        if audio.size < 2 or not (audio != 0).any():
            problems.append(f"{path}: silent or shorter than 2 samples, no use as noise")
            continue
        recordings.append(torch.from_numpy(audio))
    if problems:
        raise ValueError(f"train.noise_dir: {len(problems)} of {len(files)} noise files cannot be used: "
                         + "; ".join(problems))
    return recordings


def _fit_center(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Centre-crop or centre-zero-pad ``waveform [samples]`` to ``length``."""
    current = waveform.numel()
    if current >= length:
        start = (current - length) // 2
        return waveform[start:start + length]
    before = (length - current) // 2
    return torch.nn.functional.pad(waveform, (before, length - current - before))


def augment_recordings(recordings: list[torch.Tensor], generator: torch.Generator, noise_prob: float = 0.0,
                       snr_min: float = 0.0, snr_max: float = 20.0, noise_colours: tuple[str, ...] = COLOURS,
                       gain_db: float = 0.0, speed: float = 0.0,
                       noise_recordings: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Augmented copies of ``recordings`` (each 1-D float32 ``[samples_i]``, CPU), lengths may differ.

    In order: speed (the length becomes ``round(samples_i / factor)``), gain, then additive noise whose
    SNR is measured over the whole recording, as :mod:`scnn.features.noise` and the noise evaluation
    measure it. Given the recordings as read (before the silence trim), the noise lands where the
    evaluation puts it. Draws are made in a fixed order and only for the augmentations switched on, so a
    setting switched off changes nothing else.
    """
    batch = len(recordings)
    out = [row.clone() for row in recordings]
    if speed:
        factors = 1.0 + (torch.rand(batch, generator=generator) * 2 - 1) * speed
        out = [torch.nn.functional.interpolate(row[None, None], size=max(2, round(row.numel() / factor)),
                                               mode="linear", align_corners=False)[0, 0]
               for row, factor in zip(out, factors.tolist())]
    if gain_db:
        gains = (torch.rand(batch, generator=generator) * 2 - 1) * gain_db
        out = [row * 10.0 ** (gain / 20.0) for row, gain in zip(out, gains.tolist())]
    if noise_prob:
        chosen = torch.rand(batch, generator=generator) < noise_prob
        picks = torch.randint(0, len(noise_colours) + bool(noise_recordings), (batch,), generator=generator)
        snr = snr_min + torch.rand(batch, generator=generator) * (snr_max - snr_min)
        for row in range(batch):
            length = out[row].numel()
            if picks[row] == len(noise_colours):
                noise = recording_noise(noise_recordings, length, generator)
            else:
                noise = torch_coloured_noise([COLOURS.index(noise_colours[int(picks[row])])], max(2, length),
                                             generator)[0, :length]
            # unit-RMS noise -> P(noise) = P(signal) / 10^(snr/10)
            gain = (out[row].square().mean() / 10.0 ** (snr[row] / 10.0)).sqrt() * chosen[row]
            out[row] = out[row] + gain * noise
    return out


def augment_waveforms(waveforms: torch.Tensor, generator: torch.Generator, noise_prob: float = 0.0,
                      snr_min: float = 0.0, snr_max: float = 20.0, noise_colours: tuple[str, ...] = COLOURS,
                      gain_db: float = 0.0, speed: float = 0.0,
                      recordings: list[torch.Tensor] | None = None) -> torch.Tensor:
    """:func:`augment_recordings` of the rows of ``waveforms [B, samples]`` (float32, CPU), each row
    centre-fitted back to ``samples`` after a speed change: ``[B, samples]``."""
    batch, length = waveforms.shape
    rows = augment_recordings(list(waveforms), generator, noise_prob, snr_min, snr_max, noise_colours, gain_db,
                              speed, recordings)
    return torch.stack([_fit_center(row, length) for row in rows]) if rows else waveforms.clone()


# --------------------------------------------------------------------------- vocal-tract-length perturbation

VTLP_BOUNDARY = 0.8  # share of the Nyquist frequency up to which the warp is the plain scaling f -> alpha f


def vtlp_warp(frequency: np.ndarray | torch.Tensor, alpha: float, nyquist: float):
    """The piecewise-linear frequency warp of VTLP (Jaitly & Hinton 2013, as Kaldi's VTLN):
    ``f -> alpha f`` below ``boundary = VTLP_BOUNDARY * nyquist * min(alpha, 1) / alpha``, then the
    straight line that takes the boundary's image to the Nyquist frequency (which stays fixed), so
    that the warp is monotone and maps [0, nyquist] onto itself. Frequencies in Hz."""
    high = VTLP_BOUNDARY * nyquist
    boundary = high * min(alpha, 1.0) / alpha
    upper = nyquist - (nyquist - high * min(alpha, 1.0)) / (nyquist - boundary) * (nyquist - frequency)
    if isinstance(frequency, torch.Tensor):
        return torch.where(frequency <= boundary, frequency * alpha, upper)
    return np.where(frequency <= boundary, frequency * alpha, upper)


def vtlp_matrices(factors: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Per-sample linear maps ``[B, bins, bins]`` (bins = n_fft // 2 + 1) that warp a power spectrum
    ``[bins, frames]`` by :func:`vtlp_warp` with ``factors [B]``: the energy at frequency f moves to
    warp(f), so alpha > 1 raises formants (a shorter vocal tract). Row k of the map interpolates the
    input linearly at warp^-1(f_k) (the warp is inverted numerically on the bin grid). Frequencies in
    bins: the map does not depend on the sample rate."""
    bins = n_fft // 2 + 1
    grid = torch.arange(bins, dtype=torch.float64)
    nyquist = float(bins - 1)
    maps = torch.zeros(len(factors), bins, bins)
    for row, alpha in enumerate(factors.tolist()):
        warped = vtlp_warp(grid, alpha, nyquist)                                  # monotone, 0 -> 0, nyq -> nyq
        source = torch.from_numpy(np.interp(grid.numpy(), warped.numpy(), grid.numpy()))  # warp^-1(f_k)
        low = source.floor().long().clamp(0, bins - 2)
        fraction = (source - low).clamp(0, 1).float()
        maps[row, torch.arange(bins), low] = 1 - fraction
        maps[row, torch.arange(bins), low + 1] += fraction
    return maps


def draw_vtlp(batch: int, vtlp: float, generator: torch.Generator) -> torch.Tensor:
    """Warp factors ``[batch]`` drawn uniformly from [1 - vtlp, 1 + vtlp] (Jaitly & Hinton: 0.9..1.1)."""
    return 1.0 + (torch.rand(batch, generator=generator) * 2 - 1) * vtlp


def draw_eq_gains(batch: int, eq_db: float, bins: int, generator: torch.Generator) -> torch.Tensor:
    """Random microphone / channel responses: power gains ``[batch, bins]`` of smooth curves in dB,

        g(f) = sum_{k=1..3} a_k cos(pi k f / F),   a_k uniform in [-eq_db / k, eq_db / k]  (dB),

    f the STFT bin, F the Nyquist bin. k = 1 tilts the spectrum (bright against dull microphones), k = 2, 3
    raise or cut broad bands. Multiplying the power spectrum by 10^(g / 10) is a linear filter whose
    magnitude response is that curve: what another microphone or room does to the same voice.
    """
    orders = torch.arange(1, 4, dtype=torch.float32)
    amplitudes = (torch.rand(batch, 3, generator=generator) * 2 - 1) * eq_db / orders      # [batch, 3] dB
    frequency = torch.linspace(0.0, 1.0, bins)                                             # f / F
    curves = amplitudes @ torch.cos(torch.pi * orders[:, None] * frequency[None, :])       # [batch, bins] dB
    return torch.pow(10.0, curves / 10.0)


def mixup_batch(x: torch.Tensor, generator: torch.Generator, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018): ``(lam * x + (1 - lam) * x[perm], perm, lam)`` with lam ~ Beta(alpha, alpha);
    the loss is then ``lam * loss(y) + (1 - lam) * loss(y[perm])``."""
    lam = _beta_symmetric(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator)
    return lam * x + (1 - lam) * x[perm], perm, lam


def _beta_symmetric(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha) by Johnk's algorithm (rejection on two uniforms), from ``generator``."""
    while True:
        u, v = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        x, y = u ** (1.0 / alpha), v ** (1.0 / alpha)
        if 0 < x + y <= 1:
            return x / (x + y)
