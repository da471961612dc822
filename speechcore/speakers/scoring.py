"""Speaker scores: cosine, adaptive symmetric score normalisation (AS-norm), thresholds.

Two scales, each with its own threshold, reported with every result:
- `cosine`: cosine similarity of L2-normalised embeddings, in [-1, 1].
- `as-norm`: s' = ((s - mu_e)/sd_e + (s - mu_t)/sd_t) / 2, where mu/sd are the mean
  and deviation of the top-N cosines of the enrolment (e) and test (t) embeddings
  against an impostor cohort. Unitless (impostor trials centre near 0, in
  standard deviations); used once the cohort has `min_cohort` embeddings.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    """Per embedding model; calibrated by bench/speaker_eval.py (see README)."""
    cosine: float
    as_norm: float
    min_cohort: int = 10
    top_n: int = 200

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "Thresholds":
        return cls(cosine=float(options.get("cosine_threshold", 0.75)),
                   as_norm=float(options.get("as_norm_threshold", 2.4)),
                   min_cohort=int(options.get("min_cohort", 10)),
                   top_n=int(options.get("as_norm_top_n", 200)))


@dataclass
class Score:
    score: float
    scale: str          # "cosine" | "as-norm"
    threshold: float
    cosine: float
    cohort_size: int

    @property
    def accepted(self) -> bool:
        return self.score >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def voiceprint(embeddings: list[np.ndarray]) -> np.ndarray:
    """A speaker's print: the L2-normalised mean of its sample embeddings."""
    mean = np.mean(np.stack(embeddings), axis=0)
    return (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _top_stats(emb: np.ndarray, cohort: np.ndarray, top_n: int) -> tuple[float, float]:
    sims = cohort @ (emb / (np.linalg.norm(emb) + 1e-12))
    top = np.sort(sims)[-top_n:]
    return float(top.mean()), float(max(top.std(), 1e-3))


def as_norm(raw: float, enrol: np.ndarray, test: np.ndarray, cohort: np.ndarray, top_n: int) -> float:
    mu_e, sd_e = _top_stats(enrol, cohort, top_n)
    mu_t, sd_t = _top_stats(test, cohort, top_n)
    return 0.5 * ((raw - mu_e) / sd_e + (raw - mu_t) / sd_t)


def score(enrol: np.ndarray, test: np.ndarray, cohort: np.ndarray, thresholds: Thresholds) -> Score:
    """AS-norm when the cohort is large enough, raw cosine otherwise."""
    raw = cosine(enrol, test)
    n = len(cohort) if cohort.size else 0
    if n >= thresholds.min_cohort:
        value = as_norm(raw, enrol, test, cohort, thresholds.top_n)
        return Score(round(value, 4), "as-norm", thresholds.as_norm, round(raw, 4), n)
    return Score(round(raw, 4), "cosine", thresholds.cosine, round(raw, 4), n)


def equal_error_rate(genuine: list[float], impostor: list[float]) -> tuple[float, float]:
    """(EER, threshold at the EER) of scores where higher means 'same' / 'accept'."""
    g, i = np.asarray(genuine, float), np.asarray(impostor, float)
    best = (1.0, 0.0)
    gap = 2.0
    for t in np.unique(np.concatenate([g, i])):
        frr, far = float(np.mean(g < t)), float(np.mean(i >= t))
        if abs(frr - far) < gap:
            gap, best = abs(frr - far), ((frr + far) / 2, float(t))
    return best


def threshold_at_far(impostor: list[float], far: float) -> float:
    """Lowest threshold whose false-accept rate on `impostor` is at most `far`."""
    i = np.sort(np.asarray(impostor, np.float32))  # a float32 step: also above the score in float32
    if not len(i):
        return 0.0
    k = int(np.floor(far * len(i)))
    return float(np.nextafter(i[len(i) - 1 - k], np.float32(np.inf))) if k < len(i) else float(i[0])
