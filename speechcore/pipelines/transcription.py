"""File-transcription planning: speech regions -> decode windows -> ASR requests -> one transcript.

Pure functions, so the Serve request graph, a job worker and a Ray Data stage
plan and merge the same way. Regions close together form chunks; chunks are
packed into windows of up to 28 s with long pauses cut short, as
faster-whisper's own VAD path does. A request carries only its pieces of the
audio (never the whole recording, nor long silences), and a long recording
becomes several requests, which replicas can decode in parallel and a batcher
can interleave with other work; the merge maps times back to the recording.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.schemas import ASRRequest, Segment, Transcript, TranscribeOptions, Word
from speechcore.vad import merge_for_decoding

Span = tuple[float, float]


@dataclass(frozen=True)
class PlanLimits:
    max_chunk_s: float = 28.0
    """Longest decode window: Whisper's window is 30 s; leave room for padding."""
    merge_gap_s: float = 1.0
    """Regions closer than this stay together with their pause (context for the decoder). bench/models.py
    parity: 1 s beats 0.5 s in WER on files with pauses; 1.5-2 s lost words where the speaker changes."""
    pack_windows: bool = True
    """Chunks further apart share a decode window, their pause cut to `packed_gap_s`: every window costs a
    whole 30 s encoder pass however little speech it holds, so packing is what brings the time of files
    with pauses to faster-whisper's own VAD path (which packs speech the same way)."""
    packed_gap_s: float = 0.5
    """Audio kept between packed chunks (the end of one pause and the start of the next, half each)."""
    max_request_s: float = 240.0
    """Most audio one ASR request carries; longer recordings become several requests."""


@dataclass(frozen=True)
class PlannedRequest:
    pieces: tuple[Span, ...]
    """Spans of the recording (seconds) whose audio, laid end to end, is this request's audio."""
    clips: tuple[Span, ...]
    """Decode windows, in seconds of the request's audio."""

    @property
    def start_s(self) -> float:
        return self.pieces[0][0]

    @property
    def end_s(self) -> float:
        return self.pieces[-1][1]

    @property
    def speech_s(self) -> float:
        return sum(e - s for s, e in self.clips)

    def piece_at(self, t: float, end: bool = False) -> tuple[int, float]:
        """(index of the piece holding time `t` of the request's audio, where that piece starts there).
        At the seam of two pieces a start belongs to the later piece and an `end` to the earlier one; a
        time past the last piece (Whisper's 20 ms grid) belongs to the last."""
        offset = 0.0
        for i, (s, e) in enumerate(self.pieces):
            if t < offset + e - s or (end and t <= offset + e - s) or i == len(self.pieces) - 1:
                return i, offset
            offset += e - s
        raise AssertionError("unreachable")

    def recording_time(self, t: float, end: bool = False) -> float:
        """A time in the request's audio -> the same instant in the recording."""
        i, offset = self.piece_at(t, end)
        return round(self.pieces[i][0] + t - offset, 3)

    @property
    def has_cuts(self) -> bool:
        """A window holds pieces with a pause cut out between them: a segment may run across the cut."""
        return len(self.pieces) > len(self.clips)


def plan_limits(model_extra: dict[str, Any]) -> PlanLimits:
    """The plan for a model (its ModelInfo.extra): windows are packed only for a model that pads every
    window to a fixed length (Whisper) and that gives word timestamps, by which segments are cut at the
    pauses packing removed; a model whose cost follows the audio gains nothing from packing."""
    return PlanLimits(pack_windows=bool(model_extra.get("fixed_window_s"))
                      and model_extra.get("word_timestamps") is not False)


def decode_options(plan: list[PlannedRequest], options: TranscribeOptions) -> TranscribeOptions:
    """The options the ASR requests need: word timestamps on when pauses were cut (to split segments)."""
    return replace(options, word_timestamps=options.word_timestamps or any(p.has_cuts for p in plan))


def plan_transcription(regions: list[Span], limits: PlanLimits = PlanLimits()) -> list[PlannedRequest]:
    """Speech regions (seconds) -> requests of at most `max_request_s` of audio each, in order."""
    chunks = merge_for_decoding(regions, limits.max_chunk_s, limits.merge_gap_s)
    windows: list[list[Span]] = []
    for piece in _padded(chunks, limits.packed_gap_s / 2 if limits.pack_windows else 0.0):
        if limits.pack_windows and windows and _length(windows[-1]) + piece[1] - piece[0] <= limits.max_chunk_s:
            windows[-1].append(piece)
        else:
            windows.append([piece])
    groups: list[list[list[Span]]] = []
    for window in windows:
        if not groups or sum(_length(w) for w in groups[-1]) + _length(window) > limits.max_request_s:
            groups.append([])
        groups[-1].append(window)
    return [_request(g) for g in groups]


def _padded(chunks: list[Span], pad_s: float) -> list[Span]:
    """Each chunk with up to `pad_s` of the pauses between it and its neighbours (at most half of each)."""
    out = []
    for i, (s, e) in enumerate(chunks):
        before = min(pad_s, (s - chunks[i - 1][1]) / 2) if i else 0.0
        after = min(pad_s, (chunks[i + 1][0] - e) / 2) if i + 1 < len(chunks) else 0.0
        out.append((round(s - before, 3), round(e + after, 3)))
    return out


def _length(spans: list[Span]) -> float:
    return sum(e - s for s, e in spans)


def _request(windows: list[list[Span]]) -> PlannedRequest:
    pieces, clips, offset = [], [], 0.0
    for window in windows:
        start = offset
        pieces += window
        offset += _length(window)
        clips.append((round(start, 3), round(offset, 3)))
    return PlannedRequest(tuple(pieces), tuple(clips))


def asr_requests(audio: np.ndarray, plan: list[PlannedRequest], options: TranscribeOptions) -> list[ASRRequest]:
    """One ASRRequest per planned request, each with only its pieces of `audio` (16 kHz mono)."""
    return [ASRRequest(_pieces(audio, p), list(p.clips), options) for p in plan]


def _pieces(audio: np.ndarray, p: PlannedRequest) -> np.ndarray:
    return np.concatenate([audio[_sample(s):_sample(e)] for s, e in p.pieces])


def speech_sample(audio: np.ndarray, plan: list[PlannedRequest], seconds: float = 30.0) -> np.ndarray:
    """The first `seconds` of speech (long pauses left out): what language detection listens to."""
    pieces = [audio[_sample(s):_sample(e)] for p in plan for s, e in p.pieces]
    return np.concatenate(pieces)[:_sample(seconds)] if pieces else np.zeros(0, dtype=np.float32)


def merge_transcripts(plan: list[PlannedRequest], parts: list[Transcript], duration_s: float,
                      options: TranscribeOptions, model: str = "") -> Transcript:
    """The requests' transcripts as one, in recording time; no requests (silence) -> an empty transcript."""
    segments: list[Segment] = []
    for p, t in zip(plan, parts, strict=True):
        for seg in t.segments:
            segments += [in_recording_time(part, p, len(segments) + i) for i, part in enumerate(at_cuts(seg, p))]
    first = parts[0] if parts else None
    return Transcript(text=" ".join(t.text.strip() for t in parts if t.text.strip()),
                      language=first.language if first else options.language or "",
                      language_probability=first.language_probability if first else 0.0,
                      duration=duration_s, segments=segments, model=first.model if first else model)


def at_cuts(seg: Segment, p: PlannedRequest) -> list[Segment]:
    """The segment split where it runs across a cut pause (by its words' pieces), so that no segment spans
    a silence the decoder never heard; a segment without words stays whole."""
    if not p.has_cuts or not seg.words:
        return [seg]
    groups: dict[int, list[Word]] = {}
    for w in seg.words:
        groups.setdefault(p.piece_at((w.start + w.end) / 2)[0], []).append(w)
    if len(groups) == 1:
        return [seg]
    return [replace(seg, start=words[0].start, end=words[-1].end, text="".join(w.word for w in words).strip(),
                    tokens=[], words=words) for _, words in sorted(groups.items())]


def in_recording_time(seg: Segment, p: PlannedRequest, new_id: int) -> Segment:
    """A segment of the request's audio (and its words) in recording time, renumbered."""
    words = None if seg.words is None else [
        replace(w, start=p.recording_time(w.start), end=p.recording_time(w.end, True)) for w in seg.words]
    return replace(seg, id=new_id, start=p.recording_time(seg.start), end=p.recording_time(seg.end, True),
                   words=words)


def _sample(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))
