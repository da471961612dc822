"""Which decoded text is worth showing: Whisper's own quality signals, applied to live results.

Measured on the recorded fixtures (README, "Live transcription"): with the
short encoder window that partials use, the decoder sometimes runs on into
the silent padding and repeats the whole transcript with timestamps past the
end of the audio (whisper-base, a 6.25 s turn: the right sentence, then five
copies of it at 7.2-11.2 s; WER 3.7), and on about a second of speech it
loops ("Mr John, Mr John, ..."). Both are caught by signals Whisper itself
uses to reject a decode, so no extra decode is needed:

* a segment that starts past the end of the audio describes audio that does
  not exist (dropped from partials and finals alike; segment *ends* are no
  signal: faster-whisper's batched decode rounds them up to whole seconds);
* a segment that repeats an earlier one word for word is the decoder starting
  over (dropped from partials);
* text that compresses better than `MAX_COMPRESSION_RATIO` is a repetition
  loop, and an average log-probability under `MIN_AVG_LOGPROB` is a guess
  (Whisper's `compression_ratio_threshold` and `logprob_threshold`): such a
  partial is not shown (the next partial or the final follows anyway);
* under `MIN_PARTIAL_VOICED_S` of voice Whisper guesses ("Mr. Judge" for
  "And Mr. John"), so no partial is decoded before that much voice.
"""
from __future__ import annotations

import zlib
from dataclasses import replace

from speechcore.schemas import Segment, Transcript

MAX_COMPRESSION_RATIO = 2.4
MIN_AVG_LOGPROB = -1.0
MIN_PARTIAL_VOICED_S = 1.0


def within_audio(transcript: Transcript, duration_s: float) -> Transcript:
    """The transcript without segments that start past the decoded audio."""
    kept = [s for s in transcript.segments if s.start < duration_s]
    return transcript if len(kept) == len(transcript.segments) else _keep(transcript, kept)


def without_repeats(transcript: Transcript) -> Transcript:
    """The transcript up to the first segment that repeats an earlier one."""
    seen: set[str] = set()
    for i, segment in enumerate(transcript.segments):
        key = " ".join(segment.text.lower().split())
        if key in seen:
            return _keep(transcript, transcript.segments[:i])
        seen.add(key)
    return transcript


def worth_showing(transcript: Transcript) -> bool:
    """False for text Whisper itself would have rejected (a repetition loop, or a low-confidence guess)."""
    text = transcript.text.strip()
    if not text:
        return False
    if compression_ratio(text) > MAX_COMPRESSION_RATIO:
        return False
    logprobs = [s.avg_logprob for s in transcript.segments]
    return not logprobs or sum(logprobs) / len(logprobs) >= MIN_AVG_LOGPROB


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def _keep(transcript: Transcript, segments: list[Segment]) -> Transcript:
    return replace(transcript, segments=segments, text=" ".join(s.text.strip() for s in segments).strip())
