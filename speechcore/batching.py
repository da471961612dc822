"""Batching for a model that runs one batch at a time: lanes, audio-second budgets, admission.

Ray Serve's `@serve.batch` (Ray 2.60) forms the next batch as soon as the
previous one is dispatched, then waits for a free slot: under sustained load
every request that queues behind a long batch (seconds of ASR) becomes a batch
of one, and batching gives nothing exactly when it is needed (measured: four
staggered requests ran as four batches of one). `DrainBatcher` forms a batch
only when the model is free, from everything that queued meanwhile:

- **Lanes.** Interactive work (live partials and finals) is taken before bulk
  work (uploads, jobs) and never shares a batch with it, so a live final never
  waits behind queued uploads; bulk requests are cut into pieces of one bulk
  budget (`split_request`), so it waits at most for the bulk batch running now.
- **Audio seconds.** A batch is filled up to `max_batch_audio_s` of audio
  (bulk: `bulk_batch_audio_s`; at least one item), not to a request count: ten
  2 s partials cost what one 20 s chunk does.
- **Admission.** A lane holds at most `max_requests[lane]` requests and
  `max_audio_s[lane]` seconds of audio (admitted, not yet answered); beyond
  that a request is refused at once (`Overloaded`: 429 with `Retry-After`, the
  time the work ahead needs at the measured speed), so latency stays bounded
  for what is admitted. An empty lane always admits, so any file under the
  length limit can run.
- **Failures stay with their item.** When a batch fails, its items run again
  one by one, so only the item that fails gets the error.
- **Cancellation.** Items of callers that went away never run; a running
  batch is told (`stopped()`) when all its callers are gone, so a backend can
  stop at the next segment.
"""
from __future__ import annotations

import asyncio
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Awaitable, Callable, Generic, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from speechcore.errors import ApiError
from speechcore.schemas import ASRRequest, Lane, Transcript

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")

LANES: tuple[Lane, ...] = ("interactive", "bulk")

Stopped = Callable[[], bool]
BatchFn = Callable[[list[T], Stopped], Awaitable[list[R]]]


def _per_lane(interactive: V, bulk: V) -> dict[Lane, V]:
    return {"interactive": interactive, "bulk": bulk}


class BatchConfig(BaseModel):
    """A batching deployment's `user_config` (applied by `reconfigure`, changeable without a restart)."""
    model_config = ConfigDict(extra="forbid")

    max_batch_audio_s: float = Field(120.0, gt=0)
    """Audio seconds per model call (a longer single item still runs, alone)."""
    bulk_batch_audio_s: float | None = Field(None, gt=0)
    """Audio seconds per bulk batch, and the size of the pieces bulk requests are cut into (default:
    `max_batch_audio_s`): the longest a live request waits behind bulk work is one such batch."""
    batch_wait_s: float = Field(0.01, ge=0)
    """An idle model waits this long so simultaneous calls share a batch."""
    max_requests: dict[Lane, int | None] = Field(default_factory=lambda: _per_lane(None, 16))
    """Requests a lane may hold (None: unbounded); beyond it requests are refused (429 + Retry-After).
    Keep the sum below the deployment's `max_ongoing_requests`, so Serve never queues interactive work
    behind bulk work before it reaches the lanes."""
    max_audio_s: dict[Lane, float | None] = Field(default_factory=lambda: _per_lane(None, 180.0))
    """Audio seconds a lane may hold (None: unbounded); beyond it requests are refused."""


    def budget(self, lane: Lane) -> float:
        """Audio seconds per batch of `lane`."""
        if lane == "bulk" and self.bulk_batch_audio_s:
            return self.bulk_batch_audio_s
        return self.max_batch_audio_s


class Overloaded(ApiError):
    """A lane is full: the request is refused at once rather than queued behind minutes of work."""

    def __init__(self, lane: str, retry_after_s: float):
        super().__init__(429, "overloaded", f"The server is at capacity for {lane} work; retry in "
                                            f"{math.ceil(retry_after_s)} s.", retry_after_s=retry_after_s)


@dataclass(eq=False)
class _Item(Generic[T, R]):
    value: T
    cost: float
    future: asyncio.Future[R]
    lane: Lane = "interactive"
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _Speed:
    """Audio seconds processed per wall-clock second (exponential average over batches)."""
    value: float = 0.0

    def update(self, cost: float, took: float) -> None:
        sample = cost / max(took, 1e-3)
        self.value = sample if not self.value else 0.8 * self.value + 0.2 * sample


@dataclass
class _Lane(Generic[T, R]):
    items: list[_Item[T, R]] = field(default_factory=list)

    def queued(self) -> float:
        return sum(i.cost for i in self.items if not i.future.done())


@dataclass(frozen=True)
class BatchReport:
    """One batch that ran: its lane, each item's wait in the queue, its total cost (audio seconds), run time."""
    lane: Lane
    waits_s: list[float]
    cost: float
    run_s: float


class DrainBatcher(Generic[T, R]):
    def __init__(self, run: BatchFn[T, R], config: BatchConfig | None = None,
                 on_batch: Callable[[BatchReport], None] | None = None):
        self._run = run
        self.on_batch = on_batch   # told about every batch run (metrics)
        self.config = config or BatchConfig.model_validate({})
        self._lanes: dict[Lane, _Lane[T, R]] = {lane: _Lane() for lane in LANES}
        self._worker: asyncio.Task[None] | None = None
        self._speed = _Speed()
        self._held: dict[Lane, list[float]] = {lane: [] for lane in LANES}   # admitted requests' audio seconds
        self.batch_sizes: list[int] = []   # recent batch sizes, for tests and metrics

    def configure(self, config: BatchConfig) -> None:
        self.config = config

    def queued_audio_s(self, lane: Lane) -> float:
        return self._lanes[lane].queued()

    @contextmanager
    def admitted(self, lane: Lane, cost: float) -> Iterator[None]:
        """Holds a request's place in its lane while it runs; Overloaded at once when the lane is full."""
        held = self._held[lane]
        max_requests, max_audio = self.config.max_requests[lane], self.config.max_audio_s[lane]
        if held and ((max_requests is not None and len(held) >= max_requests)
                     or (max_audio is not None and sum(held) + cost > max_audio)):
            ahead = sum(held) + (self.queued_audio_s("interactive") if lane == "bulk" else 0.0)
            raise Overloaded(lane, max(1.0, ahead / self._speed.value) if self._speed.value else 5.0)
        held.append(cost)
        try:
            yield
        finally:
            held.remove(cost)

    async def submit(self, item: T, cost: float = 1.0, lane: Lane = "interactive") -> R:
        """The item's result once its batch ran."""
        loop = asyncio.get_running_loop()
        entry: _Item[T, R] = _Item(item, cost, loop.create_future(), lane)
        self._lanes[lane].items.append(entry)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await entry.future

    def _take(self) -> list[_Item[T, R]]:
        """The next batch, up to the audio budget (at least one item), from one lane: interactive
        while it has work, else bulk (a mixed batch would make interactive callers wait for bulk audio)."""
        for lane in LANES:
            budget = self.config.budget(lane)
            queue = self._lanes[lane].items
            batch: list[_Item[T, R]] = []
            while queue:
                if queue[0].future.done():      # the caller went away: never run it
                    queue.pop(0)
                    continue
                if batch and sum(i.cost for i in batch) + queue[0].cost > budget:
                    break
                batch.append(queue.pop(0))
            if batch:
                return batch
        return []

    async def _work(self) -> None:
        if self.config.batch_wait_s:
            await asyncio.sleep(self.config.batch_wait_s)
        while batch := self._take():
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-100:]
            started = time.perf_counter()
            await self._run_batch(batch)
            took = time.perf_counter() - started
            self._speed.update(sum(i.cost for i in batch), took)
            if self.on_batch is not None:
                self.on_batch(BatchReport(batch[0].lane, [started - i.queued_at for i in batch],
                                          sum(i.cost for i in batch), took))

    async def _run_batch(self, batch: list[_Item[T, R]]) -> None:
        try:
            results = await self._run([i.value for i in batch], lambda: all(i.future.done() for i in batch))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            for item in batch:       # find the item that fails: only its caller gets the error
                if not item.future.done():
                    await self._run_batch([item])
            return
        for item, result in zip(batch, results):
            _settle(item, result)


def _settle(item: _Item[T, R], outcome: R | Exception) -> None:
    if item.future.done():
        return
    if isinstance(outcome, Exception):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)


@dataclass
class Failed:
    """An item's error inside a batch result list (for `@serve.batch` methods, which fail whole batches)."""
    error: Exception


async def isolate_failures(run: Callable[[list[T]], Awaitable[list[R]]], items: list[T]) -> list[R | Failed]:
    """`run(items)`; when it fails, each item alone, so only the item that fails carries the error."""
    try:
        return list(await run(items))
    except Exception as exc:
        if len(items) == 1:
            return [Failed(exc)]
    out: list[R | Failed] = []
    for item in items:
        try:
            out.extend(await run([item]))
        except Exception as exc:
            out.append(Failed(exc))
    return out


def unwrap(result: R | Failed) -> R:
    if isinstance(result, Failed):
        raise result.error
    return result


def audio_seconds(request: ASRRequest) -> float:
    """What a request costs the model: the seconds of audio it decodes."""
    return sum(end - start for start, end in request.clips)


def split_request(request: ASRRequest, budget_s: float) -> list[ASRRequest]:
    """Consecutive clips grouped into pieces of at most `budget_s` audio seconds (at least one clip each)."""
    pieces: list[list[tuple[float, float]]] = [[]]
    used = 0.0
    for clip in request.clips:
        length = clip[1] - clip[0]
        if pieces[-1] and used + length > budget_s:
            pieces.append([])
            used = 0.0
        pieces[-1].append(clip)
        used += length
    return [replace(request, clips=clips) for clips in pieces]


def join_transcripts(parts: list[Transcript]) -> Transcript:
    """One transcript from the transcripts of a request's pieces, in order."""
    first = parts[0]
    segments = [replace(s, id=i) for i, s in enumerate(s for p in parts for s in p.segments)]
    return replace(first, text=" ".join(p.text for p in parts if p.text).strip(), segments=segments)
