"""Open-loop HTTP load: requests start at a fixed rate whatever the server's latency (as real users
arrive), so queueing shows up as latency instead of slowing the generator down (closed-loop clients,
like Locust users, understate it). Requests are the client library's typed calls."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import httpx

from clients.calls import Call, SpeechError, check
from loadtest.stats import Samples

CallFactory = Callable[[int], Call[Any]]


async def run_rate(base_url: str, make_call: CallFactory, rate: float, duration_s: float,
                   headers: dict[str, str] | None = None, timeout_s: float = 120) -> tuple[Samples, float]:
    """Start `rate` requests a second for `duration_s`; (samples by 'ok', errors by status/code, wall seconds)."""
    samples = Samples()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s, limits=limits) as http:
        async def one(i: int) -> None:
            call = make_call(i)
            started = time.perf_counter()
            try:
                r = await http.request(call.method, call.path, **call.kwargs)
                call.parse(check(r))
                samples.add("ok", time.perf_counter() - started)
            except SpeechError as err:
                samples.fail(f"{err.status} {err.code}")
            except httpx.HTTPError as err:
                samples.fail(type(err).__name__)

        tasks, t0 = [], time.perf_counter()
        for i in range(max(1, int(rate * duration_s))):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return samples, time.perf_counter() - t0
