"""Causal MFCC: features that can be computed as the audio arrives, frame by frame.

The default front end (:func:`scnn.features.mfcc.waveform_to_mfcc`) trims silence, centres the
word and clips the log-mel at 80 dB below the loudest bin of the whole recording: every frame
depends on the whole file. Here frame t depends only on the samples up to its end:

    stream  = n_fft - hop zeros, then the audio x[0], x[1], ...
    frame t = stream[t*hop : t*hop + n_fft]       (ends at audio sample (t+1)*hop: latency one hop)
    P[t]    = |rfft(hann(n_fft) * frame t)|^2                        power spectrum [n_fft//2 + 1]
    M[t]    = 10 * log10(max(mel_filters @ P[t], 1e-10))             log-mel (dB) [n_mels], no clipping
    C[t]    = DCT-II(M[t], norm="ortho")[:n_mfcc]                    MFCC [n_mfcc] (librosa's DCT)

:class:`CausalMfcc` keeps the samples not yet framed and returns every frame completed by a
new chunk; :func:`causal_mfcc` runs it on a whole waveform, so offline features and streamed
ones are the same numbers. ``FeatureConfig(representation="causal_mfcc")`` uses it for datasets:
the waveform is centre-padded with zeros (or centre-cropped) to ``num_frames * hop_length``
samples, with no trim (``top_db`` must be None).
"""

from __future__ import annotations

import numpy as np


class CausalMfcc:
    """Incremental causal MFCC (equations in the module docstring).

    push(samples [n]) -> new frames ``[k, n_mfcc]`` float32 (k >= 0: every frame the chunk completed).
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, n_mfcc: int):
        import librosa
        from scipy.fft import dct

        if hop_length > n_fft:
            raise ValueError(f"causal MFCC: hop_length ({hop_length}) must not exceed n_fft ({n_fft})")
        self.n_fft, self.hop_length, self.n_mfcc = int(n_fft), int(hop_length), int(n_mfcc)
        self.window = np.hanning(n_fft + 1)[:-1].astype(np.float64)  # periodic Hann, as librosa's STFT
        self.mel_filters = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float64)
        self.dct = dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]  # [n_mfcc, n_mels]
        self.reset()

    def reset(self) -> None:
        """Start a new stream: the buffer holds the n_fft - hop zeros before the first sample."""
        self.buffer = np.zeros(self.n_fft - self.hop_length, dtype=np.float64)

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self.push_frames(samples)[0]

    def push_frames(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`push`, and each new frame's level: the mean square of its last hop of samples in
        dB (dBFS for audio in [-1, 1]) ``[k]``, for telling speech from silence."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        self.buffer = np.concatenate([self.buffer, samples])
        count = (len(self.buffer) - self.n_fft) // self.hop_length + 1 if len(self.buffer) >= self.n_fft else 0
        if count == 0:
            return np.zeros((0, self.n_mfcc), dtype=np.float32), np.zeros(0, dtype=np.float32)
        starts = np.arange(count) * self.hop_length
        frames = self.buffer[starts[:, None] + np.arange(self.n_fft)]  # [count, n_fft]
        self.buffer = self.buffer[count * self.hop_length:]
        power = np.abs(np.fft.rfft(frames * self.window, axis=1)) ** 2
        log_mel = 10.0 * np.log10(np.maximum(power @ self.mel_filters.T, 1e-10))
        levels = 10.0 * np.log10(np.maximum(np.mean(frames[:, -self.hop_length:] ** 2, axis=1), 1e-12))
        return (log_mel @ self.dct.T).astype(np.float32), levels.astype(np.float32)


def causal_mfcc(waveform: np.ndarray, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                n_mfcc: int) -> np.ndarray:
    """``[n_mfcc, frames]`` of a whole waveform ``[samples]``: frames = samples // hop_length."""
    return CausalMfcc(sample_rate, n_fft, hop_length, n_mels, n_mfcc).push(waveform).T
