"""Speech regions from Silero frame probabilities (pure logic, no model).

Hysteresis as in Silero's own `get_speech_timestamps`: speech opens at
`threshold` and closes after `min_silence_ms` below `threshold - 0.15`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SAMPLES = 512
FRAME_SECONDS = FRAME_SAMPLES / 16000


@dataclass(frozen=True)
class RegionOptions:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 300
    speech_pad_ms: int = 200
    max_speech_s: float = 28.0


def speech_regions(probs: np.ndarray, duration: float, opts: RegionOptions = RegionOptions()) -> list[tuple[float, float]]:
    """[(start, end)] seconds of speech; long regions are cut at their quietest frame."""
    neg = opts.threshold - 0.15
    raw: list[list[int]] = []
    start = None
    silent = 0
    min_silence = max(1, round(opts.min_silence_ms / 1000 / FRAME_SECONDS))
    for i, p in enumerate(probs):
        if p >= opts.threshold:
            silent = 0
            if start is None:
                start = i
        elif start is not None and p < neg:
            silent += 1
            if silent >= min_silence:
                raw.append([start, i - silent + 1])
                start, silent = None, 0
    if start is not None:
        raw.append([start, len(probs)])
    min_speech = opts.min_speech_ms / 1000 / FRAME_SECONDS
    pad = round(opts.speech_pad_ms / 1000 / FRAME_SECONDS)
    padded = [(max(0, s - pad), min(len(probs), e + pad)) for s, e in raw if e - s >= min_speech]
    max_frames = max(1, int(opts.max_speech_s / FRAME_SECONDS))
    pieces = [p for s, e in _merge_overlaps(padded) for p in _split_long(probs, s, e, max_frames)]
    return [(round(s * FRAME_SECONDS, 3), round(min(duration, e * FRAME_SECONDS), 3)) for s, e in pieces]


def _split_long(probs: np.ndarray, start: int, end: int, max_frames: int) -> list[tuple[int, int]]:
    out = []
    while end - start > max_frames:
        window = list(probs[start + max_frames // 2: start + max_frames])
        cut = start + max_frames // 2 + window.index(min(window))
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def _merge_overlaps(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in regions:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def merge_for_decoding(regions: list[tuple[float, float]], max_chunk_s: float,
                       max_gap_s: float) -> list[tuple[float, float]]:
    """Join neighbouring regions (gap <= max_gap_s) into chunks of at most max_chunk_s.

    Fewer, longer chunks give Whisper context and fewer decoder calls; the
    silence between distant regions is never decoded.
    """
    chunks: list[tuple[float, float]] = []
    for s, e in regions:
        if chunks and s - chunks[-1][1] <= max_gap_s and e - chunks[-1][0] <= max_chunk_s:
            chunks[-1] = (chunks[-1][0], e)
        else:
            chunks.append((s, e))
    return chunks
