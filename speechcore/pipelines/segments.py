"""Sentence-sized segments from decode chunks, cut at word timestamps.

A decode chunk can hold up to 28 s of speech, and Whisper's own segments
break wherever its timestamp tokens fall, often mid-sentence; neither makes a
readable subtitle cue or verbose segment. Words flow across the decoder's
segment breaks (not across a pause over `max_pause_s`) and are cut after
sentence punctuation (not after abbreviations such as "Mr." or before a
lower-case word); a sentence still longer than `max_s` is cut at the clause
punctuation nearest its middle, else at its longest pause between words.
A segment that comes out unchanged keeps everything; a re-cut one keeps its
decode's avg_logprob, no_speech_prob and temperature but carries no token ids
(`tokens: []`): the backend's token ids belong to the decoder's segment.
"""
from __future__ import annotations

import zlib
from dataclasses import replace

from speechcore.schemas import Segment, Word

SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
CLAUSE_END = (",", ";", ":", "—", "、", "，", "；")
ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "prof.", "sr.", "jr.", "vs.", "etc.", "e.g.", "i.e.",
                 "no.", "mt.", "gen.", "col.", "capt.", "lt."}
CLOSERS = "\"')]»”’"


def sentence_segments(segments: list[Segment], max_s: float = 10.0, max_pause_s: float = 1.5) -> list[Segment]:
    """Segments re-cut into sentences, renumbered from 0; segments without words are kept whole."""
    out: list[Segment] = []
    for run in _runs(segments, max_pause_s):
        if not run[0].words:
            out.append(replace(run[0], id=len(out)))
            continue
        owner = {id(w): seg for seg in run for w in seg.words or []}
        for words in split_words([w for seg in run for w in seg.words or []], max_s):
            out.append(_piece(words, owner[id(words[0])], owner[id(words[-1])], len(out)))
    return out


def _runs(segments: list[Segment], max_pause_s: float) -> list[list[Segment]]:
    """Consecutive segments whose words flow on (no pause over `max_pause_s`); wordless ones alone."""
    runs: list[list[Segment]] = []
    for seg in segments:
        prev = runs[-1][-1] if runs else None
        if prev and prev.words and seg.words and seg.words[0].start - prev.words[-1].end <= max_pause_s:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    return runs


def _piece(words: list[Word], first: Segment, last: Segment, idx: int) -> Segment:
    if first is last and first.words and words[0] is first.words[0] and words[-1] is first.words[-1]:
        return replace(first, id=idx)   # the decoder's segment was a sentence already
    start = first.start if first.words and words[0] is first.words[0] else words[0].start
    end = last.end if last.words and words[-1] is last.words[-1] else words[-1].end
    text = "".join(w.word for w in words).strip()
    return replace(first, id=idx, start=start, end=max(end, start), text=text, words=list(words), tokens=[],
                   compression_ratio=compression_ratio(text))


def split_words(words: list[Word], max_s: float) -> list[list[Word]]:
    """Words -> sentences, each no longer than `max_s` unless one word is."""
    sentences: list[list[Word]] = [[]]
    for i, w in enumerate(words):
        sentences[-1].append(w)
        if i + 1 < len(words) and _ends_sentence(w.word, words[i + 1].word):
            sentences.append([])
    return [piece for s in sentences if s for piece in _limit(s, max_s)]


def _ends_sentence(word: str, following: str) -> bool:
    token = word.strip().rstrip(CLOSERS)
    if not token.endswith(SENTENCE_END) or token.lower() in ABBREVIATIONS:
        return False
    if len(token) == 2 and token[0].isupper():   # an initial: "J. Smith"
        return False
    first = next((c for c in following if c.isalpha()), "")
    return not first.islower()


def _limit(words: list[Word], max_s: float) -> list[list[Word]]:
    if len(words) < 2 or words[-1].end - words[0].start <= max_s:
        return [words]
    cut = _best_cut(words)
    return _limit(words[:cut], max_s) + _limit(words[cut:], max_s)


def _best_cut(words: list[Word]) -> int:
    """Index where the second half starts: clause punctuation nearest the middle, else the longest pause."""
    middle = (words[0].start + words[-1].end) / 2
    clauses = [i + 1 for i, w in enumerate(words[:-1]) if w.word.strip().rstrip(CLOSERS).endswith(CLAUSE_END)]
    if clauses:
        return min(clauses, key=lambda i: abs(words[i].start - middle))
    return max(range(1, len(words)), key=lambda i: (words[i].start - words[i - 1].end, -abs(words[i].start - middle)))


def compression_ratio(text: str) -> float:
    """Whisper's repetition signal: bytes of the text over bytes of its zlib compression."""
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0
