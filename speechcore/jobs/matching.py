"""Voiceprint matching for job results (the reference's policy) and the AS-norm cohort it uses.

- Fewer than `min_cohort` cohort embeddings: raw cosine against each
  speaker's print, threshold `VOICEPRINT_THRESHOLD` (0.75) relaxed by the
  spread of the speaker's samples (one sample: -0.05; more: up to -0.10), never
  below 0.60.
- `min_cohort` or more: AS-norm (top_n 200) with the embedding model's
  calibrated AS-norm threshold (one-sample speakers stricter), and the best
  candidate must lead the second by `margin`, else it stays unnamed for review.
The cohort is every speaker embedding of completed jobs (`emb_*.npy`), saved
as one matrix; automatic rebuilds never shrink it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechcore.speakers.scoring import as_norm, cosine, voiceprint


@dataclass(frozen=True)
class MatchPolicy:
    threshold: float = 0.75
    floor: float = 0.60
    single_sample_relax: float = 0.05
    max_relax: float = 0.10
    asnorm_threshold: float = 2.4
    asnorm_single_extra: float = 0.5
    """One-sample speakers need this much more AS-norm score (stricter, as in the reference)."""
    margin: float = 0.05
    min_cohort: int = 10
    top_n: int = 200


@dataclass
class Candidate:
    id: str
    name: str
    embeddings: list[np.ndarray]


@dataclass
class Match:
    id: str | None
    name: str | None
    similarity: float


def spread(embeddings: list[np.ndarray]) -> float:
    """Mean cosine distance of a speaker's samples to their print (0 for one sample)."""
    if len(embeddings) < 2:
        return 0.0
    print_ = voiceprint(embeddings)
    return float(np.mean([1.0 - cosine(e, print_) for e in embeddings]))


def cosine_threshold(policy: MatchPolicy, c: Candidate) -> float:
    relax = policy.single_sample_relax if len(c.embeddings) == 1 else min(policy.max_relax, spread(c.embeddings))
    return max(policy.floor, policy.threshold - relax)


def match(embedding: np.ndarray, candidates: list[Candidate], cohort: np.ndarray, policy: MatchPolicy) -> Match:
    """The voiceprint this embedding belongs to, or an unnamed match with the best score."""
    usable = [c for c in candidates if c.embeddings]
    if not usable:
        return Match(None, None, 0.0)
    prints = [voiceprint(c.embeddings) for c in usable]
    raw = [cosine(p, embedding) for p in prints]
    if len(cohort) >= policy.min_cohort:
        scores = [as_norm(r, p, embedding, cohort, policy.top_n) for r, p in zip(raw, prints)]
        thresholds = [policy.asnorm_threshold + (policy.asnorm_single_extra if len(c.embeddings) == 1 else 0.0)
                      for c in usable]
        margin = policy.margin
    else:
        scores, thresholds, margin = raw, [cosine_threshold(policy, c) for c in usable], 0.0
    order = np.argsort(scores)[::-1]
    best = int(order[0])
    value = round(float(scores[best]), 4)
    lead = scores[best] - scores[int(order[1])] if len(order) > 1 else np.inf
    if scores[best] >= thresholds[best] and lead >= margin:
        return Match(usable[best].id, usable[best].name, value)
    return Match(None, None, value)


class Cohort:
    """The impostor cohort matrix, persisted as .npy; rebuilt from job embeddings."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.matrix = np.zeros((0, 0), np.float32)
        if path.exists():
            try:
                self.matrix = np.load(path).astype(np.float32)
            except (OSError, ValueError):
                self.matrix = np.zeros((0, 0), np.float32)

    def __len__(self) -> int:
        return int(self.matrix.shape[0]) if self.matrix.size else 0

    def rebuild(self, job_dirs: list[Path], force: bool) -> tuple[int, int]:
        """(cohort size, skipped jobs) from every `emb_*.npy` under `job_dirs`; an automatic
        (not forced) rebuild keeps the current cohort when the new one would be smaller."""
        with self.lock:
            rows, skipped = collect(job_dirs)
            if rows and (force or len(rows) >= len(self)):
                self.matrix = np.stack(rows).astype(np.float32)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp.npy")
                np.save(tmp, self.matrix)
                tmp.replace(self.path)
            elif force and not rows:
                self.matrix = np.zeros((0, 0), np.float32)
                self.path.unlink(missing_ok=True)
            return len(self), skipped


def collect(job_dirs: list[Path]) -> tuple[list[np.ndarray], int]:
    """Every finite speaker embedding of the jobs, and how many jobs had an unreadable one."""
    rows, skipped = [], 0
    for d in job_dirs:
        try:
            found = [np.load(f).astype(np.float32).ravel() for f in sorted(d.glob("emb_*.npy"))]
        except (OSError, ValueError):
            skipped += 1
            continue
        rows += [e for e in found if np.isfinite(e).all()]
    dims = {r.shape[0] for r in rows}
    if len(dims) > 1:     # another embedding model's files: keep the most common dimension
        common = max(dims, key=lambda k: sum(r.shape[0] == k for r in rows))
        rows = [r for r in rows if r.shape[0] == common]
    return rows, skipped
