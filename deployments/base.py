"""What every model deployment shares: load its backend from the spec, report what it runs."""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import asdict
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

from graphs.metrics import ModelTimer
from speechcore.backends import load_backend
from speechcore.settings import get_settings
from speechcore.spec import BackendSpec

T = TypeVar("T")


class ModelDeployment:
    role: str = ""

    def __init__(self, spec: dict[str, Any]):
        logging.getLogger().setLevel(get_settings().log_level)
        self.spec = BackendSpec(**spec)
        self.backend: Any = load_backend(self.role, self.spec)

    def info(self) -> dict[str, Any]:
        return asdict(self.backend.info())

    @staticmethod
    async def run(fn: Callable[..., T], *args: Any) -> T:
        """Model work off the replica's event loop, so health checks and batching keep going (timed: metrics)."""
        with ModelTimer(getattr(fn, "__name__", "call")):
            return await asyncio.to_thread(fn, *args)


_END = object()


async def iterate_in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    """A blocking generator stepped in worker threads, one item per step, so the event loop stays free.

    When the consumer stops (a client went away, Serve cancelled the call), the generator is
    closed in a thread as soon as its current step returns: at most one more step of model work.
    """
    lock = threading.Lock()

    def step() -> Any:
        with lock:
            return next(items, _END)

    def close() -> None:
        with lock:
            getattr(items, "close", lambda: None)()

    try:
        while (item := await asyncio.to_thread(step)) is not _END:
            yield item
    finally:
        threading.Thread(target=close, daemon=True).start()
