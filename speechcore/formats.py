"""Transcript renderings shared by the API families: confidence, SRT, WebVTT."""
from __future__ import annotations

import math
from typing import Any

from speechcore.schemas import Segment, Transcript, Word


def segment_confidence(seg: Segment) -> float:
    """Mean token probability of a segment (exp of Whisper's avg_logprob), in [0, 1]."""
    if seg.words:
        return round(sum(w.probability for w in seg.words) / len(seg.words), 4)
    return round(min(1.0, math.exp(seg.avg_logprob)), 4)


def transcript_confidence(t: Transcript) -> float:
    """Duration-weighted mean of segment confidences; 0 when nothing was recognised."""
    total = sum(max(s.end - s.start, 1e-3) for s in t.segments)
    if not total:
        return 0.0
    return round(sum(segment_confidence(s) * max(s.end - s.start, 1e-3) for s in t.segments) / total, 4)


def ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def gateway_word(w: Word, offset_s: float = 0.0) -> dict[str, Any]:
    """A word as the speech gateway reports it (REST and streaming alike)."""
    return {"word": w.word.strip(), "start_ms": ms(offset_s + w.start), "end_ms": ms(offset_s + w.end),
            "confidence": round(w.probability, 4)}


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: list[Segment]) -> str:
    cues = [f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text.strip()}\n"
            for i, s in enumerate(segments, 1)]
    return "\n".join(cues)


def to_vtt(segments: list[Segment]) -> str:
    cues = [f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text.strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)
