"""Batching for a model that runs one batch at a time.

Ray Serve's `@serve.batch` (Ray 2.60) forms the next batch as soon as the
previous one is dispatched, then waits for a free slot: under sustained load
every request that queues behind a long batch (seconds of ASR) becomes a batch
of one, and batching gives nothing exactly when it is needed (measured: four
staggered requests ran as four batches of one). `DrainBatcher` forms a batch
only when the model is free, from everything that queued meanwhile.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class DrainBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], max_size: int = 8, wait_s: float = 0.01):
        self._run = run
        self.max_size = max_size
        self.wait_s = wait_s
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.batch_sizes: list[int] = []   # recent batch sizes, for tests and metrics

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await future

    async def _work(self) -> None:
        if self.wait_s:
            await asyncio.sleep(self.wait_s)   # an idle model waits briefly so simultaneous calls share a batch
        while self._queue:
            taken, self._queue = self._queue[: self.max_size], self._queue[self.max_size:]
            batch = [(item, f) for item, f in taken if not f.done()]   # skip callers that went away
            if not batch:
                continue
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-100:]
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: every caller gets the error
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for (_, f), result in zip(batch, results):
                if not f.done():
                    f.set_result(result)
