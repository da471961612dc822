"""Latency samples -> percentiles, per event type; shared by the HTTP and WebSocket generators."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100); NaN for no samples."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)

    def fail(self, why: str) -> None:
        self.errors[why] += 1

    def summary(self, kind: str) -> dict[str, float]:
        v = self.latencies.get(kind, [])
        return {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95), "max": max(v, default=float("nan"))}
