"""Causal MFCC: features that can be computed as the audio arrives, frame by frame.

The default front end (:func:`scnn.features.mfcc.waveform_to_mfcc`) trims silence, centres the
word and clips the log-mel at 80 dB below the loudest bin of the whole recording: every frame
depends on the whole file. Here frame t depends only on the samples up to its end:

    stream  = n_fft - hop zeros, then the audio x[0], x[1], ...
    frame t = stream[t*hop : t*hop + n_fft]       (ends at audio sample (t+1)*hop: latency one hop)
    P[t]    = |rfft(hann(n_fft) * frame t)|^2                        power spectrum [n_fft//2 + 1]
    M[t]    = 10 * log10(max(mel_filters @ P[t], 1e-10))             log-mel (dB) [n_mels]
    C[t]    = DCT-II(M[t], norm="ortho")[:n_mfcc]                    MFCC [n_mfcc] (librosa's DCT)

Two optional causal normalisations, off by default (the "causal" preset), on in "causal_norm":

- ``peak_range_db`` (a running level reference): the log-mel in dB below the loudest mel bin heard
  so far, floored ``peak_range_db`` below it,
      R[t]  = max(R[t-1], max_m M[t])          (R[-1] = -inf)
      M'[t] = max(M[t] - R[t], -peak_range_db)
  the causal counterpart of the default front end's 80 dB clip below the recording's peak: a
  recording's gain and its noise floor (or digital silence) no longer reach the features.
- ``running_mean_frames`` = tau > 0 (running cepstral mean normalisation): each MFCC minus an
  exponentially weighted mean of the frames so far, time constant tau frames, bias-corrected,
      S[t] = (1 - 1/tau) S[t-1] + C[t],   W[t] = (1 - 1/tau) W[t-1] + 1   (S[-1] = 0, W[-1] = 0)
      out[t] = C[t] - S[t] / W[t]
  the causal counterpart of per-utterance CMN: a microphone's or a vocal tract's constant
  offset per coefficient is removed once a few frames have been heard.
- ``mean_gate_db`` = g (with both of the above): the running mean learns from the sound, not from the
  silence before it. A frame updates S and W only when its loudest bin is within g dB of the
  loudest heard so far, and the mean starts over when the level reference rises more than g dB
  above the level at which it last started (B):
      L[t] = max_m M[t];  if R[t] > B + g: S = W = 0, B = R[t]      (B = -inf before the first frame)
      if L[t] >= R[t] - g: S[t] = (1 - 1/tau) S[t-1] + C[t], W[t] = (1 - 1/tau) W[t-1] + 1
      out[t] = C[t] - S[t] / W[t]                                   (C[t] itself while W = 0)
  Without the gate, the zeros or the room noise heard before a word fill the mean, and the word's
  first frames are normalised by the silence's cepstrum.
- ``mean_prior_frames`` = k > 0 (with ``mean_prior`` m0, ``[n_mfcc]``): the mean starts, and starts
  over, from a prior worth k frames instead of from nothing (the global prior of online CMVN, as
  Kaldi's): S = k * m0, W = k wherever the above sets S = W = 0. Without it, the first frame of a word
  is normalised by itself (its output is exactly 0) and the next few nearly so: the onset is lost.
  m0 is the mean cepstrum of the training recordings' sound (:func:`fit_mean_prior`, fitted
  by :func:`scnn.data.prepare_data` on the training split and kept in the checkpoint's feature config).

:class:`CausalMfcc` keeps the samples not yet framed (and R, S, W) and returns every frame
completed by a new chunk; :func:`causal_mfcc` runs it on a whole waveform, so offline features
and streamed ones are the same numbers. ``FeatureConfig(representation="causal_mfcc")`` uses it
for datasets: the waveform is centre-padded with zeros (or centre-cropped) to
``num_frames * hop_length`` samples, with no trim (``top_db`` must be None).
"""

from __future__ import annotations

import numpy as np


class CausalMfcc:
    """Incremental causal MFCC (equations in the module docstring).

    push(samples [n]) -> new frames ``[k, n_mfcc]`` float32 (k >= 0: every frame the chunk completed).
    peak_range_db: None (absolute dB) or the running level reference's floor in dB (> 0);
    running_mean_frames: 0 (off) or the running CMN's time constant in frames (>= 1); mean_gate_db:
    None or the speech gate of the running mean in dB (needs both others); mean_prior_frames: 0 or the
    weight in frames of the prior ``mean_prior`` (``[n_mfcc]``) the running mean starts from.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, n_mfcc: int,
                 peak_range_db: float | None = None, running_mean_frames: float = 0.0,
                 mean_gate_db: float | None = None, mean_prior_frames: float = 0.0, mean_prior=None):
        import librosa
        from scipy.fft import dct

        if hop_length > n_fft:
            raise ValueError(f"causal MFCC: hop_length ({hop_length}) must not exceed n_fft ({n_fft})")
        check_causal_normalisation(peak_range_db, running_mean_frames, mean_gate_db, mean_prior_frames)
        self.prior_weight, self.prior_sum = mean_start(mean_prior_frames, mean_prior, n_mfcc)
        self.mean_gate_db = None if mean_gate_db is None else float(mean_gate_db)
        self.n_fft, self.hop_length, self.n_mfcc = int(n_fft), int(hop_length), int(n_mfcc)
        self.peak_range_db = None if peak_range_db is None else float(peak_range_db)
        self.decay = 1.0 - 1.0 / running_mean_frames if running_mean_frames else None
        self.window = np.hanning(n_fft + 1)[:-1].astype(np.float64)  # periodic Hann, as librosa's STFT
        self.mel_filters = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float64)
        self.dct = dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]  # [n_mfcc, n_mels]
        self.reset()

    @classmethod
    def from_config(cls, config) -> "CausalMfcc":
        """The front end of a :class:`scnn.features.mfcc.FeatureConfig` with representation 'causal_mfcc'."""
        return cls(config.sample_rate, config.n_fft, config.hop_length, config.n_mels, config.n_mfcc,
                   config.peak_range_db, config.running_mean_frames, config.mean_gate_db, config.mean_prior_frames,
                   config.mean_prior)

    def reset(self) -> None:
        """Start a new stream: the buffer holds the n_fft - hop zeros before the first sample;
        no level heard yet, an empty running mean."""
        self.buffer = np.zeros(self.n_fft - self.hop_length, dtype=np.float64)
        self.loudest_db = -np.inf
        self.mean_sum, self.mean_weight = self.prior_sum.copy(), self.prior_weight  # the prior, or nothing
        self.mean_start_db = -np.inf  # B: the level reference when the gated mean last started

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self.push_frames(samples)[0]

    def push_frames(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`push`, and each new frame's level: the mean square of its last hop of samples in
        dB (dBFS for audio in [-1, 1]) ``[k]``, for telling speech from silence."""
        mfcc, frame_loudest, loudest, levels = self._raw_frames(samples)
        if self.decay is not None:
            gate = self.mean_gate_db
            for index in range(len(mfcc)):
                if gate is not None and loudest[index] > self.mean_start_db + gate:  # a new, louder sound
                    self.mean_sum, self.mean_weight = self.prior_sum.copy(), self.prior_weight
                    self.mean_start_db = float(loudest[index])
                if gate is None or frame_loudest[index] >= loudest[index] - gate:
                    self.mean_sum = self.decay * self.mean_sum + mfcc[index]
                    self.mean_weight = self.decay * self.mean_weight + 1.0
                if self.mean_weight > 0:
                    mfcc[index] = mfcc[index] - self.mean_sum / self.mean_weight
        return mfcc.astype(np.float32), levels

    def _raw_frames(self, samples: np.ndarray):
        """The frames a chunk completes before the running mean: (MFCC ``[k, n_mfcc]`` float64, each
        frame's loudest bin L ``[k]``, the level reference R ``[k]`` (L without ``peak_range_db``), levels
        ``[k]`` float32 dB)."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        self.buffer = np.concatenate([self.buffer, samples])
        count = (len(self.buffer) - self.n_fft) // self.hop_length + 1 if len(self.buffer) >= self.n_fft else 0
        if count == 0:
            empty = np.zeros(0, dtype=np.float64)
            return np.zeros((0, self.n_mfcc), dtype=np.float64), empty, empty, np.zeros(0, dtype=np.float32)
        starts = np.arange(count) * self.hop_length
        frames = self.buffer[starts[:, None] + np.arange(self.n_fft)]  # [count, n_fft]
        self.buffer = self.buffer[count * self.hop_length:]
        power = np.abs(np.fft.rfft(frames * self.window, axis=1)) ** 2
        log_mel = 10.0 * np.log10(np.maximum(power @ self.mel_filters.T, 1e-10))
        frame_loudest = log_mel.max(axis=1)  # L[t] [count]
        loudest = frame_loudest
        if self.peak_range_db is not None:
            loudest = np.maximum.accumulate(np.maximum(frame_loudest, self.loudest_db))  # R[t] [count]
            self.loudest_db = float(loudest[-1])
            log_mel = np.maximum(log_mel - loudest[:, None], -self.peak_range_db)
        mfcc = log_mel @ self.dct.T  # [count, n_mfcc]
        levels = 10.0 * np.log10(np.maximum(np.mean(frames[:, -self.hop_length:] ** 2, axis=1), 1e-12))
        return mfcc, frame_loudest, loudest, levels.astype(np.float32)


def mean_start(mean_prior_frames: float, mean_prior, n_mfcc: int) -> tuple[float, np.ndarray]:
    """(W, S) the running mean starts and starts over from: (k, k * m0 ``[n_mfcc]``) with a prior worth
    k frames, (0, zeros) without one; ValueError when k > 0 and the prior is missing or not n_mfcc values."""
    if not mean_prior_frames:
        return 0.0, np.zeros(n_mfcc, dtype=np.float64)
    if mean_prior is None or len(mean_prior) != n_mfcc:
        raise ValueError(f"mean_prior_frames={mean_prior_frames} needs mean_prior, {n_mfcc} values (fitted on "
                         f"the training recordings: scnn.features.causal.fit_mean_prior); got {mean_prior!r}")
    return float(mean_prior_frames), float(mean_prior_frames) * np.asarray(mean_prior, dtype=np.float64)


def fit_mean_prior(waveforms, config) -> tuple[float, ...]:
    """The prior of ``mean_prior_frames``: the mean MFCC ``[n_mfcc]`` over the sound of ``waveforms``
    (1-D arrays at ``config.sample_rate`` as the front end sees them, i.e. already fitted to length:
    :func:`scnn.features.torch_mfcc.fitted_waveform`): every frame whose loudest
    bin is within ``config.mean_gate_db`` of the recording's loudest (every frame without a gate), as
    the running mean sees it (with ``config``'s level reference, no mean removed). Offline, so the
    recording's own peak tells its sound from the silence or noise before it."""
    front = CausalMfcc(config.sample_rate, config.n_fft, config.hop_length, config.n_mels, config.n_mfcc,
                       config.peak_range_db)
    total, count = np.zeros(config.n_mfcc, dtype=np.float64), 0
    for waveform in waveforms:
        front.reset()
        mfcc, frame_loudest, loudest, _ = front._raw_frames(np.asarray(waveform, dtype=np.float32))
        heard = (frame_loudest >= frame_loudest.max() - config.mean_gate_db) if config.mean_gate_db is not None \
            else np.ones(len(mfcc), dtype=bool)
        total += mfcc[heard].sum(axis=0)
        count += int(heard.sum())
    if count == 0:
        raise ValueError("fit_mean_prior: no frame to fit the prior on (no recordings, or all silent)")
    return tuple(float(value) for value in total / count)


def check_causal_normalisation(peak_range_db: float | None, running_mean_frames: float,
                               mean_gate_db: float | None = None, mean_prior_frames: float = 0.0) -> None:
    """Clear errors for the four options of the module docstring."""
    if isinstance(mean_prior_frames, bool) or not isinstance(mean_prior_frames, (int, float)) \
            or not mean_prior_frames >= 0:
        raise ValueError(f"mean_prior_frames must be 0 (off) or a positive weight in frames; got {mean_prior_frames!r}")
    if mean_prior_frames and not running_mean_frames:
        raise ValueError("mean_prior_frames is the prior of the running mean: it needs running_mean_frames")
    if mean_gate_db is not None:
        if not (isinstance(mean_gate_db, (int, float)) and mean_gate_db > 0):
            raise ValueError(f"mean_gate_db must be None or a positive number of dB; got {mean_gate_db!r}")
        if peak_range_db is None or not running_mean_frames:
            raise ValueError("mean_gate_db gates the running mean by the running level reference: it needs "
                             "peak_range_db and running_mean_frames")
    if peak_range_db is not None and not (isinstance(peak_range_db, (int, float)) and peak_range_db > 0):
        raise ValueError(f"peak_range_db must be None or a positive number of dB; got {peak_range_db!r}")
    if not isinstance(running_mean_frames, (int, float)) or not (running_mean_frames == 0 or running_mean_frames >= 1):
        raise ValueError(f"running_mean_frames must be 0 (off) or a time constant of at least 1 frame; "
                         f"got {running_mean_frames!r}")


def causal_mfcc(waveform: np.ndarray, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                n_mfcc: int, peak_range_db: float | None = None, running_mean_frames: float = 0.0,
                mean_gate_db: float | None = None) -> np.ndarray:
    """``[n_mfcc, frames]`` of a whole waveform ``[samples]``: frames = samples // hop_length."""
    return CausalMfcc(sample_rate, n_fft, hop_length, n_mels, n_mfcc, peak_range_db,
                      running_mean_frames, mean_gate_db).push(waveform).T
