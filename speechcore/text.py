"""Text for speech synthesis: one validator for every TTS family, and splitting into bounded pieces.

Every family's text goes through `speakable_text` before it reaches an engine,
so an engine never sees control characters, unpaired surrogates or text with
nothing to pronounce (those crashed synthesis with a 500), and `split_text`
cuts any text, punctuated or not, into pieces of at most `max_chars`, so one
model run (and its memory) is bounded by the piece, not by the request.
"""
from __future__ import annotations

import re
import unicodedata

from speechcore.errors import ApiError

PIECE_CHARS = 150
_SENTENCE = re.compile(r"(?<=[.!?。！？…])\s+|\n\s*\n|(?<=[。！？])")
_CLAUSE = re.compile(r"(?<=[,;:，；：—–])\s*")
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def speakable_text(text: str, max_chars: int, param: str = "text") -> str:
    """NFKC-normalised text without invisible format characters; ApiError 400 when it cannot be spoken.

    Refused: more than `max_chars` characters, control characters (NUL ...),
    unpaired surrogates, and text without a single letter or digit (only
    punctuation, spaces or zero-width characters): there is nothing to say,
    and silence would hide the client's mistake.
    """
    if len(text) > max_chars:
        raise ApiError(400, "text_too_long", f"`{param}` is {len(text)} characters; the limit is {max_chars}.",
                       param=param)
    bad = next((c for c in text if _forbidden(c)), None)
    if bad is not None:
        raise ApiError(400, "invalid_text", f"`{param}` contains a character that cannot be spoken "
                                            f"(U+{ord(bad):04X}).", param=param)
    text = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    if not _has_speech(text):
        raise ApiError(400, "empty_text", f"`{param}` has nothing to speak (no letters or digits).", param=param)
    return text.strip()


def _forbidden(c: str) -> bool:
    category = unicodedata.category(c)
    return (category == "Cc" and c not in _ALLOWED_CONTROLS) or category == "Cs"


def split_text(text: str, max_chars: int = PIECE_CHARS) -> list[str]:
    """Pieces of at most `max_chars`: whole sentences where they fit, else clauses, else words, else cuts."""
    pieces: list[str] = []
    for sentence in _nonempty(_SENTENCE.split(text)):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _pack(_nonempty(_CLAUSE.split(sentence)), max_chars, " "):
            pieces.extend(_pack(clause.split(), max_chars, " ") if len(clause) > max_chars else [clause])
    return [p for p in _pack(pieces, max_chars, " ") if _has_speech(p)]


def _has_speech(text: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" for c in text)


def _nonempty(parts: list[str]) -> list[str]:
    return [p.strip() for p in parts if p and p.strip()]


def _pack(parts: list[str], max_chars: int, sep: str) -> list[str]:
    """Join consecutive parts while they fit in `max_chars`; a part longer than that is cut."""
    out: list[str] = []
    for part in parts:
        while len(part) > max_chars:
            out.append(part[:max_chars])
            part = part[max_chars:]
        if out and len(out[-1]) + len(sep) + len(part) <= max_chars:
            out[-1] = f"{out[-1]}{sep}{part}"
        elif part:
            out.append(part)
    return out


FIRST_PIECE_CHARS = 60


def stream_pieces(text: str, max_chars: int = PIECE_CHARS, first_chars: int = FIRST_PIECE_CHARS) -> list[str]:
    """`split_text`, with a long first sentence cut at its clauses (or words): audio starts sooner."""
    pieces = split_text(text, max_chars)
    if not pieces or len(pieces[0]) <= first_chars:
        return pieces
    head = split_text(pieces[0], first_chars)
    return [head[0], *split_text(" ".join(head[1:]), max_chars), *pieces[1:]] if len(head) > 1 else pieces
