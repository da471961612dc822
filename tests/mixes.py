"""Multi-speaker recordings built from single-speaker fixtures, with known turns.

No multi-speaker fixture exists besides the 30 s call, so the tests build
conversations: LibriVox reader (A) and the "cards" speaker (B) taking turns
with 0.5 s pauses, the reference turns being each clip's own VAD regions
shifted to where the clip lands. `overlap=True` lays one of B's clips over the
middle of one of A's.
"""
from __future__ import annotations

import numpy as np

from speechcore.audio import decode_audio
from speechcore.pipelines.diarization import Turn
from tests.speech import FIXTURES

READER = [FIXTURES / f"librivox/sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920)]
CARDS = [FIXTURES / f"cards/00{n}.wav" for n in range(1, 6)]
GAP_S = 0.5


def two_speaker_mix(regions_of) -> tuple[np.ndarray, list[Turn], list[str]]:
    """(audio, reference turns, the texts' sources in order); `regions_of(audio)` gives speech regions."""
    a = [decode_audio(str(p)) for p in READER]
    b = [decode_audio(str(p)) for p in CARDS]
    pieces = [("A", a[0]), ("B", np.concatenate(b[0:2])), ("A", a[1]), ("B", np.concatenate(b[2:4])),
              ("A", a[2]), ("B", b[4])]
    gap = np.zeros(int(GAP_S * 16000), np.float32)
    parts: list[np.ndarray] = []
    turns: list[Turn] = []
    t = 0.0
    for who, clip in pieces:
        turns += [Turn(who, round(t + s, 3), round(t + e, 3)) for s, e in regions_of(clip)]
        parts += [clip, gap]
        t += (len(clip) + len(gap)) / 16000
    return np.concatenate(parts), turns, [w for w, _ in pieces]
