"""Prometheus metrics through Ray's metrics API (`ray.util.metrics`).

Every Ray node exports what its processes record at its metrics port
(`ray start --metrics-export-port`, `SPEECH_METRICS_PORT` for `graphs.launch`),
in Prometheus text format, each name prefixed `ray_` by Ray; Serve's own
`ray_serve_*` metrics (replicas, queue lengths) sit beside them. Recording is
a no-op outside a Ray worker (router tests, scripts), so callers never check.
Tag values are bounded: routes are FastAPI's path templates, never raw paths.
"""
from __future__ import annotations

import bisect
import logging
import time
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from speechcore.batching import BatchReport
from speechcore.sessions.events import AudioIn, AudioOut, Event, Final

log = logging.getLogger(__name__)
SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
RATIOS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
SIZES = [1, 2, 4, 8, 16, 32, 64, 128]


@lru_cache(maxsize=1)
def _registry() -> dict[str, Any] | None:
    import ray

    if not ray.is_initialized():
        return None
    from ray.util.metrics import Counter, Gauge, Histogram

    def hist(name: str, doc: str, tags: tuple[str, ...], bounds: list[float] = SECONDS) -> Histogram:
        return Histogram(name, doc, boundaries=bounds, tag_keys=tags)

    return {
        "requests": Counter("speech_requests_total", "HTTP requests and WebSocket sessions answered",
                            tag_keys=("family", "route", "status")),
        "errors": Counter("speech_request_errors_total", "Requests answered 4xx/5xx (and sessions closed in error)",
                          tag_keys=("family", "route", "status")),
        "latency": hist("speech_request_latency_seconds", "Request latency at the ingress", ("family", "route")),
        "model_latency": hist("speech_model_latency_seconds", "One model call in a deployment",
                              ("deployment", "method")),
        "queue_wait": hist("speech_queue_wait_seconds", "Time a request waited for its batch", ("deployment", "lane")),
        "batch_size": hist("speech_batch_size", "Requests per model batch", ("deployment",), SIZES),
        "audio_seconds": Counter("speech_audio_seconds_total", "Seconds of audio processed",
                                 tag_keys=("deployment",)),
        "rtf": hist("speech_real_time_factor", "Batch compute seconds per audio second", ("deployment",), RATIOS),
        "sessions": Gauge("speech_live_sessions", "Open WebSocket sessions", tag_keys=("family",)),
        "end_of_turn": hist("speech_end_of_turn_latency_seconds",
                            "End of the user's voice (its audio arriving) to the final transcript sent", ("family",)),
        "voice_to_voice": hist("speech_voice_to_voice_latency_seconds",
                               "End of the user's voice to the first agent audio sent", ("family",)),
    }


def record(name: str, value: float, **tags: str) -> None:
    """Observe (histogram), add (counter) or set (gauge) metric `name`; nothing outside Ray."""
    metrics = _registry()
    if metrics is None:
        return
    metric = metrics[name]
    try:
        if hasattr(metric, "observe"):
            metric.observe(value, tags=tags)
        elif hasattr(metric, "inc"):
            metric.inc(value, tags=tags)
        else:
            metric.set(value, tags=tags)
    except Exception:   # a metric must never fail the request or the batch loop that records it
        log.debug("metric %s not recorded", name, exc_info=True)


def replica_deployment() -> str:
    """The Serve deployment this process serves ("" outside a replica)."""
    try:
        from ray import serve

        return str(serve.get_replica_context().deployment)
    except Exception:
        return ""


def batch_observer(deployment: str) -> Callable[[BatchReport], None]:
    """A DrainBatcher `on_batch` hook: batch size, each request's queue wait (by lane), audio seconds
    processed and real-time factor (compute seconds per audio second) of `deployment`."""
    def observe(report: BatchReport) -> None:
        record("batch_size", len(report.waits_s), deployment=deployment)
        for wait in report.waits_s:
            record("queue_wait", wait, deployment=deployment, lane=report.lane)
        if report.cost > 0:
            record("audio_seconds", report.cost, deployment=deployment)
            record("rtf", report.run_s / report.cost, deployment=deployment)
    return observe


class ModelTimer:
    """Times one model call of a deployment (`with ModelTimer(method): ...`)."""

    def __init__(self, method: str):
        self.method = method

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        record("model_latency", time.perf_counter() - self.started, deployment=replica_deployment(),
               method=self.method)


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request by family, route template and status."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _registry() is None:
            return await self.app(scope, receive, send)
        from graphs.middleware import app_path
        from speechcore.errors import family_of

        started, status = time.perf_counter(), [500]

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            tags = {"family": family_of(app_path(scope)), "route": route}
            record("latency", time.perf_counter() - started, **tags)
            record("requests", 1, status=f"{status[0] // 100}xx", **tags)
            if status[0] >= 400:
                record("errors", 1, status=str(status[0]), **tags)


class SessionClock:
    """Live-session latencies at the server: when did the audio a result refers to arrive?

    Audio arrival is logged against its stream position; a final's end time
    (stream seconds) then maps to the wall time its last voiced audio came in,
    which is what the user waits from: end-of-turn latency. The first agent
    audio after a final gives voice-to-voice latency (voice chat sessions).
    """

    def __init__(self, family: str, keep_s: float = 120.0):
        self.family, self.keep_s = family, keep_s
        self.positions: list[int] = []      # stream samples received so far, after each message
        self.times: list[float] = []
        self.turn_voice_end: float | None = None

    def observe(self, event: Event, now: float | None = None) -> None:
        """Note one event going in or out; never raises into the session."""
        try:
            self._observe(event, time.monotonic() if now is None else now)
        except Exception:
            log.debug("session clock: %r not observed", type(event).__name__, exc_info=True)

    def _observe(self, event: Event, now: float) -> None:
        if isinstance(event, AudioIn):
            self.positions.append((self.positions[-1] if self.positions else 0) + int(np.size(event.audio)))
            self.times.append(now)
            self._prune(now)
        elif isinstance(event, Final):
            arrived = self.arrival(int(event.end_s * 16000))
            if arrived is not None:
                record("end_of_turn", now - arrived, family=self.family)
                self.turn_voice_end = arrived
        elif isinstance(event, AudioOut) and self.turn_voice_end is not None:
            record("voice_to_voice", now - self.turn_voice_end, family=self.family)
            self.turn_voice_end = None

    def arrival(self, sample: int) -> float | None:
        """Wall time at which stream position `sample` had arrived (None: not logged or pruned)."""
        i = bisect.bisect_left(self.positions, sample)
        return self.times[i] if i < len(self.times) else None

    def _prune(self, now: float) -> None:
        cut = bisect.bisect_left(self.times, now - self.keep_s)
        if cut > 256:
            del self.positions[:cut], self.times[:cut]
