"""Audio-quality check run before trusting an anti-spoofing score: duration, clipping, level, SNR,
and whether the audio is speech at all (a tone, noise or clicks is not: the spoofing model was
never trained on them and may call them "real")."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
FRAME = 320  # 20 ms
WINDOW = 640  # 40 ms analysis window for pitch (two periods of 50 Hz)
PITCH_LAGS = (SAMPLE_RATE // 500, SAMPLE_RATE // 50)  # 50-500 Hz


@dataclass
class QualityLimits:
    min_seconds: float = 1.0
    max_clipped_fraction: float = 0.01
    min_level_dbfs: float = -50.0
    max_level_dbfs: float = -3.0
    min_snr_db: float = 10.0
    min_voiced_fraction: float = 0.2
    """Share of the loud frames that must be periodic at a voice pitch (noise and clicks are not)."""
    max_tonal_fraction: float = 0.8
    """Median share of a loud frame's energy in its strongest spectral peak (a pure tone: ~1)."""


@dataclass
class Quality:
    passed: bool
    duration_s: float
    clipped_fraction: float
    level_dbfs: float
    snr_db: float
    voiced_fraction: float = 0.0
    tonal_fraction: float = 0.0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _db(power: float) -> float:
    return float(10 * np.log10(max(power, 1e-12)))


def assess(audio: np.ndarray, limits: QualityLimits = QualityLimits()) -> Quality:
    """Level is the RMS of the loudest 50 % of 20 ms frames (speech), SNR that against the
    quietest 10 % (the noise floor between words), capped at 100 dB for digital silence."""
    duration = len(audio) / SAMPLE_RATE
    clipped = float(np.mean(np.abs(audio) >= 0.99)) if len(audio) else 0.0
    n = max(1, len(audio) // FRAME)
    powers = np.sort(np.mean(np.square(audio[: n * FRAME].reshape(n, -1)), axis=1)) if len(audio) >= FRAME \
        else np.array([np.mean(np.square(audio)) if len(audio) else 0.0])
    speech = float(powers[len(powers) // 2:].mean())
    noise = float(powers[: max(1, len(powers) // 10)].mean())
    level = _db(speech)
    snr = min(100.0, _db(speech) - _db(noise)) if noise > 0 else 100.0
    problems = []
    if duration < limits.min_seconds:
        problems.append(f"too short ({duration:.2f} s < {limits.min_seconds} s)")
    if clipped > limits.max_clipped_fraction:
        problems.append(f"clipped ({clipped:.1%} of samples at full scale)")
    if level < limits.min_level_dbfs:
        problems.append(f"too quiet ({level:.1f} dBFS)")
    if level > limits.max_level_dbfs:
        problems.append(f"too loud ({level:.1f} dBFS)")
    if snr < limits.min_snr_db:
        problems.append(f"noisy (SNR about {snr:.1f} dB)")
    voiced, tonal = speech_likeness(audio)
    if voiced < limits.min_voiced_fraction or tonal > limits.max_tonal_fraction:
        problems.append(f"not speech ({voiced:.0%} of loud frames voiced, {tonal:.0%} of energy in one tone)")
    return Quality(not problems, round(duration, 3), round(clipped, 5), round(level, 2), round(snr, 2),
                   round(voiced, 3), round(tonal, 3), problems)


def is_speech_problem(problem: str) -> bool:
    return problem.startswith("not speech")


def speech_likeness(audio: np.ndarray) -> tuple[float, float]:
    """(voiced fraction, tonal fraction) over the loud 40 ms frames (within 30 dB of the loudest).

    Voiced: normalised autocorrelation above 0.5 at some lag in the 50-500 Hz pitch range.
    Tonal: the median share of a frame's spectral energy within 2 bins of its peak.
    """
    if len(audio) < WINDOW:
        return 0.0, 0.0
    n = (len(audio) - WINDOW) // FRAME + 1
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float32), WINDOW)[::FRAME][:n]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(np.square(frames), axis=1)
    loud = frames[energy >= max(energy.max(), 1e-12) * 1e-3]
    if not len(loud):
        return 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(loud, n=2 * WINDOW, axis=1)) ** 2
    ac = np.fft.irfft(spectrum, axis=1)[:, : PITCH_LAGS[1] + 1]
    voiced = ac[:, PITCH_LAGS[0]:].max(axis=1) / np.maximum(ac[:, 0], 1e-12) > 0.5
    power = np.abs(np.fft.rfft(loud * np.hanning(WINDOW), axis=1)) ** 2
    peak = power.argmax(axis=1)
    bins = np.clip(peak[:, None] + np.arange(-2, 3), 0, power.shape[1] - 1)
    tonal = np.take_along_axis(power, bins, axis=1).sum(axis=1) / np.maximum(power.sum(axis=1), 1e-20)
    return float(voiced.mean()), float(np.median(tonal))
