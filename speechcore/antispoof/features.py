"""Clip-level spectral statistics for the anti-spoofing detector (feature set `lfb-stats-v1`).

Synthetic speech (neural and formant vocoders, diphone concatenation) leaves
traces in the fine spectral envelope and in how it moves from frame to frame,
over the whole band. So: a linear-frequency log filterbank (48 bands to 8 kHz)
and its cepstrum (LFCC), pooled over the frames that carry speech as mean,
spread and frame-to-frame change. Level is removed (a gain changes nothing).
Training (training/anti_spoof.py) and serving share this one function.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dct

N_FFT = 512
WIN = 400
HOP = 160
BANDS = 48
N_CEPS = 20
ACTIVE_DB = 35.0
NAME = "lfb-stats-v1"
DIM = 3 * BANDS + 2 * N_CEPS


def _band_matrix() -> np.ndarray:
    edges = np.linspace(0, N_FFT // 2 + 1, BANDS + 1).astype(int)
    m = np.zeros((N_FFT // 2 + 1, BANDS), np.float32)
    for b in range(BANDS):
        m[edges[b]:edges[b + 1], b] = 1.0 / (edges[b + 1] - edges[b])
    return m


_BANDS = _band_matrix()
_WINDOW = np.hanning(WIN).astype(np.float32)


def log_filterbank(audio: np.ndarray) -> np.ndarray:
    """[frames, BANDS] log10 band powers of 16 kHz audio (25 ms windows, 10 ms hop)."""
    if len(audio) < WIN:
        audio = np.pad(audio, (0, WIN - len(audio)))
    n = 1 + (len(audio) - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    frames = audio[idx] * _WINDOW
    power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2
    return np.log10(power @ _BANDS + 1e-10).astype(np.float32)


def spoof_features(audio: np.ndarray) -> np.ndarray:
    """One DIM-long float32 vector for a clip of 16 kHz mono float32 audio."""
    lfb = log_filterbank(np.asarray(audio, np.float32))
    energy = lfb.mean(axis=1)
    active = lfb[energy >= energy.max() - ACTIVE_DB / 10]
    if len(active) < 3:
        active = lfb
    active = active - active.mean()                       # gain invariance
    ceps = dct(active, type=2, norm="ortho", axis=1)[:, 1:N_CEPS + 1]
    delta = np.abs(np.diff(active, axis=0)).mean(axis=0) if len(active) > 1 else np.zeros(BANDS)
    return np.concatenate([active.mean(0), active.std(0), delta, ceps.mean(0), ceps.std(0)]).astype(np.float32)
