"""Word error rate on normalised text (lower case, no punctuation), for tests and benchmarks."""
from __future__ import annotations

import re

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
            "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten"}


def normalize(text: str) -> list[str]:
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return [_NUMBERS.get(w, w).strip("'") for w in words if w.strip("'")]


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return _edits(ref, hyp) / len(ref)


def unicode_tokens(text: str, by_char: bool) -> list[str]:
    """Lower-case words (or characters, for scripts written without spaces) of any script, no punctuation."""
    import unicodedata

    kept = "".join(c if unicodedata.category(c)[0] in "LN" else " "
                   for c in unicodedata.normalize("NFKC", text.lower()))
    return list(kept.replace(" ", "")) if by_char else kept.split()


def error_rate(reference: str, hypothesis: str, by_char: bool = False) -> float:
    """WER on words of any script, or CER (`by_char`: Japanese, Chinese, Korean)."""
    ref, hyp = unicode_tokens(reference, by_char), unicode_tokens(hypothesis, by_char)
    return _edits(ref, hyp) / len(ref) if ref else float(bool(hyp))


def _edits(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]
