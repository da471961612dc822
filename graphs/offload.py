"""CPU-heavy steps of background work (a job's decode and denoise) as Ray tasks.

They run in Ray's worker processes, scheduled against the cluster's CPUs like
any other Ray work, not in the ingress process whose event loop and GIL serve
live traffic. A timeout or a cancelled caller cancels the task (force: ffmpeg
and numpy calls cannot be interrupted otherwise).
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

T = TypeVar("T")
_remote: dict[tuple[Callable[..., Any], float], Any] = {}


async def in_ray_task(fn: Callable[..., T], *args: Any, cpus: float, timeout: float | None = None) -> T:
    """`fn(*args)` in a Ray task reserving `cpus`; its own exception is raised here as itself."""
    import ray

    key = (fn, cpus)
    if key not in _remote:
        _remote[key] = ray.remote(num_cpus=cpus, max_retries=0)(fn)
    ref = _remote[key].remote(*args)
    try:
        return await asyncio.wait_for(_result(ref), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        ray.cancel(ref, force=True)
        raise


async def _result(ref: Any) -> Any:
    import ray

    try:
        return await ref
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        raise (cause if isinstance(cause, Exception) else exc) from None
