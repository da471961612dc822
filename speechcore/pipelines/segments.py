"""Sentence-sized segments from decode chunks, cut at word timestamps.

A decode chunk can hold up to 28 s of speech; as one subtitle cue or one
verbose segment it is unreadable. Chunks are cut after sentence punctuation
(not after abbreviations such as "Mr." or before a lower-case word), and a
sentence still longer than `max_s` is cut at the clause punctuation nearest
its middle, else at its longest pause between words. A piece cut from a
longer decode keeps the decode's avg_logprob and no_speech_prob but carries
no token ids (`tokens: []`): the backend's token ids belong to the whole decode.
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


def sentence_segments(segments: list[Segment], max_s: float = 10.0) -> list[Segment]:
    """Segments cut into sentences (renumbered from 0); segments without words are kept whole."""
    out: list[Segment] = []
    for seg in segments:
        pieces = split_words(seg.words, max_s) if seg.words else []
        if len(pieces) <= 1:
            out.append(replace(seg, id=len(out)))
            continue
        for i, words in enumerate(pieces):
            start = seg.start if i == 0 else words[0].start
            end = seg.end if i == len(pieces) - 1 else words[-1].end
            text = "".join(w.word for w in words).strip()
            out.append(replace(seg, id=len(out), start=start, end=max(end, start), text=text, words=words,
                               tokens=[], compression_ratio=compression_ratio(text)))
    return out


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
