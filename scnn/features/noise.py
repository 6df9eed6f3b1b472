"""Noise for robustness: coloured noise, babble, and mixing at an exact signal-to-noise ratio.

All waveforms are mono float arrays ``[samples]``. Every random draw comes from an explicit
``numpy.random.Generator`` so that a seed gives the same noise.

SNR convention: ``10 log10(P_signal / P_noise)`` in dB, where P is the mean square over the
whole recording as it was read (before any silence trim), the noise spanning the whole
recording. :func:`mix_at_snr` scales the noise so that this ratio is exactly the one asked
(:func:`measure_snr` recomputes it from the clean and the noisy waveforms).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

COLOURS = ("white", "pink", "brown")
NOISE_KINDS = COLOURS + ("babble",)
BABBLE_TALKERS = 4  # recordings summed into one babble; fewer when fewer are given


def coloured_noise(colour: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise ``[length]`` (float64) whose power falls as 1/f^k: white k = 0, pink k = 1, brown k = 2.

    Shaped in the frequency domain: complex Gaussian spectrum times f^(-k/2), DC removed.
    """
    if colour not in COLOURS:
        raise ValueError(f"noise colour must be one of {COLOURS}, got {colour!r}")
    if length < 2:
        raise ValueError(f"noise needs at least 2 samples, got {length}")
    if colour == "white":
        noise = rng.standard_normal(length)
    else:
        exponent = {"pink": 1.0, "brown": 2.0}[colour]
        bins = length // 2 + 1
        spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
        frequency = np.arange(bins, dtype=np.float64)
        frequency[0] = 1.0  # avoids 0 ** -k; the DC bin is zeroed next
        spectrum *= frequency ** (-exponent / 2)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=length)
    noise = noise - noise.mean()
    return noise / np.sqrt(np.mean(noise ** 2))


def babble_noise(length: int, recordings: Sequence[np.ndarray], rng: np.random.Generator,
                 talkers: int = BABBLE_TALKERS) -> np.ndarray:
    """Unit-RMS babble ``[length]`` (float64): the sum of ``talkers`` recordings drawn from ``recordings``
    (without replacement), each scaled to unit RMS, looped to ``length`` and started at a random offset.

    The caller leaves the recording the babble is added to out of ``recordings``.
    """
    usable = [r for r in recordings if r.size > 0 and np.any(r != 0)]
    if not usable:
        raise ValueError("babble needs at least one non-silent recording to mix from")
    chosen = rng.choice(len(usable), size=min(talkers, len(usable)), replace=False)
    babble = np.zeros(length)
    for index in chosen:
        voice = np.asarray(usable[index], dtype=np.float64)
        voice = voice / np.sqrt(np.mean(voice ** 2))
        offset = int(rng.integers(0, voice.size))
        babble += np.resize(np.roll(voice, -offset), length)  # np.resize repeats the recording
    babble -= babble.mean()
    size = np.sqrt(np.mean(babble ** 2))
    return babble / size if size > 0 else babble


def make_noise(kind: str, length: int, rng: np.random.Generator,
               others: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Unit-RMS noise ``[length]`` of a kind in :data:`NOISE_KINDS` (babble mixes ``others``)."""
    if kind == "babble":
        if not others:
            raise ValueError("babble noise needs other recordings to mix from")
        return babble_noise(length, others, rng)
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(NOISE_KINDS)}")
    return coloured_noise(kind, length, rng)


def power(waveform: np.ndarray) -> float:
    """Mean square of ``waveform`` (computed in float64)."""
    return float(np.mean(np.square(np.asarray(waveform, dtype=np.float64))))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with the gain g that makes ``10 log10(P(signal) / P(g * noise)) = snr_db``.

    signal, noise: ``[samples]``, the same length (noise is not looped here). Returns the signal's
    dtype. A silent signal or silent noise is refused (no gain reaches the SNR).
    """
    signal = np.asarray(signal)
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != signal.shape:
        raise ValueError(f"signal has shape {signal.shape} but noise {noise.shape}")
    if not np.isfinite(snr_db):
        raise ValueError(f"SNR must be a finite number of dB, got {snr_db}")
    signal_power, noise_power = power(signal), power(noise)
    if signal_power == 0 or noise_power == 0:
        raise ValueError("cannot mix at an SNR: the signal or the noise is silent")
    gain = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (signal.astype(np.float64) + gain * noise).astype(signal.dtype)


def measure_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR in dB of ``noisy`` against ``clean`` (the noise is their difference)."""
    clean = np.asarray(clean, dtype=np.float64)
    return 10.0 * np.log10(power(clean) / power(np.asarray(noisy, dtype=np.float64) - clean))


def spectral_slope(noise: np.ndarray) -> float:
    """Least-squares slope of log10 power against log10 frequency (white ~ 0, pink ~ -1, brown ~ -2);
    for tests and for checking a user's noise folder."""
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    frequency = np.arange(spectrum.size)
    keep = frequency > 0
    return float(np.polyfit(np.log10(frequency[keep]), np.log10(spectrum[keep] + 1e-30), 1)[0])
