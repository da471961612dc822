"""Audio-quality check run before trusting an anti-spoofing score: duration, clipping, level, SNR."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
FRAME = 320  # 20 ms


@dataclass
class QualityLimits:
    min_seconds: float = 1.0
    max_clipped_fraction: float = 0.01
    min_level_dbfs: float = -50.0
    max_level_dbfs: float = -3.0
    min_snr_db: float = 10.0


@dataclass
class Quality:
    passed: bool
    duration_s: float
    clipped_fraction: float
    level_dbfs: float
    snr_db: float
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
    return Quality(not problems, round(duration, 3), round(clipped, 5), round(level, 2), round(snr, 2), problems)
