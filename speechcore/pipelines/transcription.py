"""File-transcription planning: speech regions -> decode chunks -> ASR requests -> one transcript.

Pure functions, so the Serve request graph, a job worker and a Ray Data stage
plan and merge the same way. A request carries only its slice of the audio
(never the whole recording), and a long recording becomes several requests of
bounded speech, which replicas can decode in parallel and a batcher can
interleave with other work.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.schemas import ASRRequest, Segment, Transcript, TranscribeOptions
from speechcore.vad import merge_for_decoding

Span = tuple[float, float]


@dataclass(frozen=True)
class PlanLimits:
    max_chunk_s: float = 28.0
    """Longest decode chunk: Whisper's window is 30 s; leave room for padding."""
    merge_gap_s: float = 1.0
    """Regions closer than this are decoded as one chunk: context, and fewer Whisper windows (each chunk is
    padded to 30 s, so a pause inside a chunk is free while a pause between chunks costs a window).
    bench/models.py parity: 1 s beats 0.5 s in WER and time on files with pauses; 1.5-2 s is faster
    still but loses words where the speaker changes."""
    max_request_s: float = 240.0
    """Most speech one ASR request carries; longer recordings become several requests."""


@dataclass(frozen=True)
class PlannedRequest:
    start_s: float
    """Where this request's slice begins in the recording."""
    end_s: float
    clips: tuple[Span, ...]
    """Decode chunks, in seconds from `start_s`."""

    @property
    def speech_s(self) -> float:
        return sum(e - s for s, e in self.clips)


def plan_transcription(regions: list[Span], limits: PlanLimits = PlanLimits()) -> list[PlannedRequest]:
    """Speech regions (seconds) -> requests of at most `max_request_s` of speech each, in order."""
    groups: list[list[Span]] = []
    for chunk in merge_for_decoding(regions, limits.max_chunk_s, limits.merge_gap_s):
        if not groups or sum(e - s for s, e in groups[-1]) + chunk[1] - chunk[0] > limits.max_request_s:
            groups.append([])
        groups[-1].append(chunk)
    return [PlannedRequest(g[0][0], g[-1][1], tuple((round(s - g[0][0], 3), round(e - g[0][0], 3)) for s, e in g))
            for g in groups]


def asr_requests(audio: np.ndarray, plan: list[PlannedRequest], options: TranscribeOptions) -> list[ASRRequest]:
    """One ASRRequest per planned request, each with its own slice of `audio` (16 kHz mono)."""
    return [ASRRequest(audio[_sample(p.start_s):_sample(p.end_s)], list(p.clips), options) for p in plan]


def speech_sample(audio: np.ndarray, plan: list[PlannedRequest], seconds: float = 30.0) -> np.ndarray:
    """The first `seconds` of speech (silence left out): what language detection listens to."""
    pieces, total = [], 0
    for p in plan:
        for s, e in p.clips:
            piece = audio[_sample(p.start_s + s):_sample(p.start_s + e)]
            pieces.append(piece[: _sample(seconds) - total])
            total += pieces[-1].size
            if total >= _sample(seconds):
                return np.concatenate(pieces)
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def merge_transcripts(plan: list[PlannedRequest], parts: list[Transcript], duration_s: float,
                      options: TranscribeOptions, model: str = "") -> Transcript:
    """The requests' transcripts as one, in recording time; no requests (silence) -> an empty transcript."""
    segments: list[Segment] = []
    for p, t in zip(plan, parts, strict=True):
        segments += [shift_segment(s, p.start_s, len(segments) + i) for i, s in enumerate(t.segments)]
    first = parts[0] if parts else None
    return Transcript(text=" ".join(t.text.strip() for t in parts if t.text.strip()),
                      language=first.language if first else options.language or "",
                      language_probability=first.language_probability if first else 0.0,
                      duration=duration_s, segments=segments, model=first.model if first else model)


def shift_segment(seg: Segment, offset_s: float, new_id: int | None = None) -> Segment:
    """The segment (and its words) moved by `offset_s` seconds, optionally renumbered."""
    words = None if seg.words is None else [replace(w, start=round(w.start + offset_s, 3),
                                                    end=round(w.end + offset_s, 3)) for w in seg.words]
    return replace(seg, id=seg.id if new_id is None else new_id, start=round(seg.start + offset_s, 3),
                   end=round(seg.end + offset_s, 3), words=words)


def _sample(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))
