"""Diarization: speech regions -> window embeddings -> clusters -> labelled turns -> speakers of words.

Pure steps over arrays, shared by the job worker and `/transcribe-with-property`
(the embedding call is passed in, so nothing here knows about Ray). No
segmentation model ships in a registry package (see the README), so turns come
from short overlapping windows inside the VAD regions: each window gets a
speaker embedding, windows are clustered bottom-up (average linkage on cosine
distance) until the closest clusters are further apart than `threshold`,
bounded by `min_speakers`/`max_speakers`, and every 10 ms frame takes the
label of the window centred nearest to it. A window whose embedding sits
close to two speakers at once (mixed voices) is flagged as overlap.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment

from speechcore.audio import SAMPLE_RATE
from speechcore.schemas import Segment, Word

Span = tuple[float, float]
FRAME_S = 0.01
Embed = Callable[[np.ndarray], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class DiarizationParams:
    window_s: float = 1.5
    """Embedding window: long enough for a voice, short enough for one speaker."""
    hop_s: float = 0.75
    min_window_s: float = 0.5
    """Regions shorter than this carry no usable voice and take their neighbours' label."""
    threshold: float = 0.4
    """Stop merging clusters whose average cosine distance is above this (speaker count estimate)."""
    min_speakers: int = 0
    """0: estimated."""
    max_speakers: int = 0
    min_cluster_share: float = 0.1
    """A cluster with fewer than this share of the windows is not a speaker of its own (unless
    `min_speakers` asks for it): it joins the nearest larger one."""
    overlap_margin: float = 0.05
    """A window within this cosine of its second speaker's centroid..."""
    overlap_min_similarity: float = 0.8
    """...and at least this similar to both centroids is flagged as overlapped speech."""
    min_turn_s: float = 0.5
    """Turns shorter than this inside a region are absorbed by their neighbours (window jitter)."""
    concurrency: int = 16
    """Embedding calls in flight at once (the deployment batches them)."""

    @classmethod
    def from_options(cls, options: dict[str, Any], min_speakers: int = 0,
                     max_speakers: int = 0) -> DiarizationParams:
        """The embedding model's calibrated clustering threshold (`diarization_threshold` among the
        speaker_embedding role's options) and the request's speaker bounds."""
        return cls(threshold=float(options.get("diarization_threshold", 0.3)),
                   min_speakers=max(0, min_speakers), max_speakers=max(0, max_speakers))


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float
    overlap: bool = False


@dataclass
class Diarization:
    turns: list[Turn]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    """Label -> the L2-normalised mean of its windows (what voiceprints are matched and enrolled with)."""
    overlaps: list[Span] = field(default_factory=list)

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})


def label(index: int) -> str:
    return f"SPEAKER_{index:02d}"


def windows(regions: Sequence[Span], params: DiarizationParams) -> list[Span]:
    """Sliding windows over each speech region (a short region is one window; too short: none)."""
    out: list[Span] = []
    for start, end in regions:
        if end - start < params.min_window_s:
            continue
        t = start
        while True:
            stop = min(t + params.window_s, end)
            if stop - t >= params.min_window_s or t == start:
                out.append((round(t, 3), round(stop, 3)))
            if stop >= end:
                break
            t += params.hop_s
    return out


def cluster(embeddings: np.ndarray, params: DiarizationParams) -> np.ndarray:
    """Cluster index (0..k-1, numbered by first appearance) per embedding row."""
    n = len(embeddings)
    if n <= 1:
        return np.zeros(n, dtype=int)
    unit = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
    tree = linkage(unit, method="average", metric="cosine")
    raw = fcluster(tree, t=params.threshold, criterion="distance")
    k = len(set(raw))
    low = max(1, params.min_speakers)
    high = min(n, params.max_speakers) if params.max_speakers > 0 else n
    if not low <= k <= high:
        raw = fcluster(tree, t=min(max(k, low), high), criterion="maxclust")
    labels = _first_seen_order(raw)
    labels = _drop_small(unit, labels, max(params.min_cluster_share * n, 1.0), low)
    return _refine(unit, labels)


def _drop_small(unit: np.ndarray, labels: np.ndarray, min_size: float, keep_at_least: int) -> np.ndarray:
    """Clusters of fewer than `min_size` windows (a cough, a laugh, a noisy window) join the nearest
    large cluster, unless that would leave fewer than `keep_at_least` speakers."""
    sizes = np.bincount(labels)
    order = np.argsort(-sizes)
    big = [int(k) for k in order if sizes[k] >= min_size] or [int(order[0])]
    big += [int(k) for k in order if int(k) not in big][:max(0, keep_at_least - len(big))]
    cents = centroids(unit, labels)
    out = labels.copy()
    for i, k in enumerate(labels):
        if int(k) not in big:
            out[i] = big[int(np.argmax(cents[big] @ unit[i]))]
    return _first_seen_order(out)


def _refine(unit: np.ndarray, labels: np.ndarray, rounds: int = 5) -> np.ndarray:
    """A few k-means steps from the clustering: each window moves to its nearest centroid."""
    for _ in range(rounds):
        k = int(labels.max()) + 1
        new = np.argmax(unit @ centroids(unit, labels).T, axis=1)
        if np.array_equal(new, labels) or len(set(new.tolist())) < k:
            break
        labels = new
    return _first_seen_order(labels)


def _first_seen_order(raw: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(c), len(order)) for c in raw], dtype=int)


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rows = [embeddings[labels == k].mean(axis=0) for k in range(int(labels.max()) + 1)]
    c = np.stack(rows)
    return (c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def overlapped(embeddings: np.ndarray, cents: np.ndarray, params: DiarizationParams) -> np.ndarray:
    """Per window: does its embedding sit close to two speakers at once (mixed voices)?"""
    if len(cents) < 2:
        return np.zeros(len(embeddings), dtype=bool)
    unit = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
    sims = np.sort(unit @ cents.T, axis=1)
    best, second = sims[:, -1], sims[:, -2]
    return np.asarray((best - second < params.overlap_margin) & (second >= params.overlap_min_similarity))


def frame_turns(regions: Sequence[Span], spans: Sequence[Span], labels: np.ndarray,
                params: DiarizationParams) -> list[Turn]:
    """Each region's frames take the label of the nearest window centre; short runs are absorbed."""
    if not len(spans):
        return []
    centres = np.array([(s + e) / 2 for s, e in spans])
    turns: list[Turn] = []
    for start, end in regions:
        frames = np.arange(start, end, FRAME_S) + FRAME_S / 2
        if not len(frames):
            continue
        nearest = np.abs(frames[:, None] - centres[None, :]).argmin(axis=1)
        runs = _runs(labels[nearest], frames, start, end)
        turns += [Turn(label(k), s, e) for k, s, e in _absorb_short(runs, params.min_turn_s)]
    return _join(turns)


def _runs(frame_labels: np.ndarray, frames: np.ndarray, start: float, end: float) -> list[tuple[int, float, float]]:
    change = np.flatnonzero(np.diff(frame_labels)) + 1
    bounds = [0, *change.tolist(), len(frame_labels)]
    return [(int(frame_labels[a]), start if a == 0 else float(frames[a] - FRAME_S / 2),
             end if b == len(frame_labels) else float(frames[b] - FRAME_S / 2))
            for a, b in zip(bounds, bounds[1:])]


def _absorb_short(runs: list[tuple[int, float, float]], min_s: float) -> list[tuple[int, float, float]]:
    """Give runs shorter than `min_s` to the longer neighbour (window jitter, not a speaker change)."""
    runs = list(runs)
    while len(runs) > 1:
        short = [i for i, (_, s, e) in enumerate(runs) if e - s < min_s]
        if not short:
            break
        i = min(short, key=lambda j: runs[j][2] - runs[j][1])
        left = runs[i - 1] if i > 0 else None
        right = runs[i + 1] if i + 1 < len(runs) else None
        into = i - 1 if right is None or (left is not None and left[2] - left[1] >= right[2] - right[1]) else i + 1
        k = runs[into][0]
        lo, hi = min(i, into), max(i, into)
        runs[lo:hi + 1] = [(k, runs[lo][1], runs[hi][2])]
    return runs


def _join(turns: list[Turn]) -> list[Turn]:
    """Adjacent turns of one speaker (touching regions) become one; times rounded to ms."""
    out: list[Turn] = []
    for t in turns:
        if out and out[-1].speaker == t.speaker and t.start - out[-1].end < 1e-6:
            out[-1] = Turn(t.speaker, out[-1].start, t.end, out[-1].overlap or t.overlap)
        else:
            out.append(t)
    return [Turn(t.speaker, round(t.start, 3), round(t.end, 3), t.overlap) for t in out]


def mark_overlaps(turns: list[Turn], overlaps: Sequence[Span]) -> list[Turn]:
    return [Turn(t.speaker, t.start, t.end, any(s < t.end and e > t.start for s, e in overlaps)) for t in turns]


def _merge_spans(spans: Sequence[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


async def diarize(audio: np.ndarray, regions: Sequence[Span], embed: Embed,
                  params: DiarizationParams = DiarizationParams()) -> Diarization:
    """Who spoke when, from 16 kHz audio, its speech regions and an embedding call (batched by its server)."""
    spans = windows(regions, params)
    if not spans:
        return Diarization([])
    gate = asyncio.Semaphore(params.concurrency)

    async def one(span: Span) -> np.ndarray:
        async with gate:
            return await embed(_clip(audio, span))

    embeddings = np.stack(await asyncio.gather(*(one(s) for s in spans))).astype(np.float32)
    return assemble(regions, spans, embeddings, params)


def diarize_batched(audio: np.ndarray, regions: Sequence[Span],
                    embed_batch: Callable[[list[np.ndarray]], list[np.ndarray]],
                    params: DiarizationParams = DiarizationParams()) -> Diarization:
    """`diarize` with the embedding model in this process (batch pipelines): one batched call."""
    spans = windows(regions, params)
    if not spans:
        return Diarization([])
    embeddings = np.stack(embed_batch([_clip(audio, s) for s in spans])).astype(np.float32)
    return assemble(regions, spans, embeddings, params)


def _clip(audio: np.ndarray, span: Span) -> np.ndarray:
    return audio[int(span[0] * SAMPLE_RATE):int(span[1] * SAMPLE_RATE)]


def assemble(regions: Sequence[Span], spans: Sequence[Span], embeddings: np.ndarray,
             params: DiarizationParams) -> Diarization:
    """Window embeddings -> clusters -> turns, per-speaker embeddings and overlapped spans."""
    labels = cluster(embeddings, params)
    cents = centroids(embeddings, labels)
    mixed = overlapped(embeddings, cents, params)
    overlaps = _merge_spans([spans[int(i)] for i in np.flatnonzero(mixed)])
    turns = mark_overlaps(frame_turns(regions, spans, labels, params), overlaps)
    used = sorted({t.speaker for t in turns})
    return Diarization(turns, {label(k): cents[k] for k in range(len(cents)) if label(k) in used}, overlaps)


# --- words and dialogues ----------------------------------------------------------------------

def speaker_at(start: float, end: float, turns: Sequence[Turn]) -> str | None:
    """The speaker whose turns cover most of [start, end]; the nearest turn when none covers it."""
    if not turns:
        return None
    cover: dict[str, float] = {}
    for t in turns:
        cover[t.speaker] = cover.get(t.speaker, 0.0) + max(0.0, min(end, t.end) - max(start, t.start))
    best = max(cover, key=lambda k: cover[k])
    if cover[best] > 0:
        return best
    mid = (start + end) / 2
    return min(turns, key=lambda t: min(abs(mid - t.start), abs(mid - t.end))).speaker


@dataclass
class Dialogue:
    speaker: str
    start: float
    end: float
    text: str
    words: list[Word]


def dialogues(segments: Sequence[Segment], turns: Sequence[Turn]) -> list[Dialogue]:
    """Transcript segments cut where the speaker changes, each word going to the speaker of its time.

    Segments without word timestamps go whole to the speaker covering most of them.
    """
    out: list[Dialogue] = []
    for seg in segments:
        for speaker, words in _word_runs(seg, turns):
            text = "".join(w.word for w in words).strip() if words else seg.text.strip()
            start, end = (words[0].start, words[-1].end) if words else (seg.start, seg.end)
            if out and out[-1].speaker == speaker and words and out[-1].words:
                prev = out[-1]
                out[-1] = Dialogue(speaker, prev.start, end, f"{prev.text} {text}".strip(), prev.words + words)
            elif text:
                out.append(Dialogue(speaker, start, end, text, list(words)))
    return out


def _word_runs(seg: Segment, turns: Sequence[Turn]) -> list[tuple[str, list[Word]]]:
    default = speaker_at(seg.start, seg.end, turns) or label(0)
    if not seg.words:
        return [(default, [])]
    runs: list[tuple[str, list[Word]]] = []
    for w in seg.words:
        speaker = speaker_at(w.start, w.end, turns) or default
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(w)
        else:
            runs.append((speaker, [w]))
    return runs


# --- evaluation -------------------------------------------------------------------------------

def parse_rttm(text: str) -> list[Turn]:
    """SPEAKER lines of an RTTM file -> turns (file id ignored)."""
    turns = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            turns.append(Turn(f[7], start, start + dur))
    return sorted(turns, key=lambda t: t.start)


def diarization_error_rate(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = 0.25) -> float:
    """DER (missed + false alarm + confusion over reference speech), frames of 10 ms, optimal
    one-to-one speaker mapping; frames within `collar` seconds of a reference boundary are not scored."""
    if not reference:
        return 0.0
    end = max(t.end for t in [*reference, *hypothesis])
    n = int(np.ceil(end / FRAME_S)) + 1
    ref, ref_names = _activity(reference, n)
    hyp, hyp_names = _activity(hypothesis, n)
    scored = np.ones(n, dtype=bool)
    for t in reference:
        for b in (t.start, t.end):
            scored[max(0, int((b - collar) / FRAME_S)):int(np.ceil((b + collar) / FRAME_S))] = False
    ref, hyp = ref[:, scored], hyp[:, scored]
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    total = n_ref.sum()
    if total == 0:
        return 0.0
    errors = np.maximum(n_ref, n_hyp).sum()
    if len(ref_names) and len(hyp_names):
        agree = ref.astype(float) @ hyp.T.astype(float)
        rows, cols = linear_sum_assignment(-agree)
        errors -= agree[rows, cols].sum()
    return float(errors / total)


def _activity(turns: Sequence[Turn], n: int) -> tuple[np.ndarray, list[str]]:
    names = sorted({t.speaker for t in turns})
    act = np.zeros((len(names), n), dtype=bool)
    for t in turns:
        act[names.index(t.speaker), int(round(t.start / FRAME_S)):int(round(t.end / FRAME_S))] = True
    return act, names
