"""DrainBatcher: batches form from what queued while the model was busy."""
from __future__ import annotations

import asyncio

import pytest

from speechcore.batching import DrainBatcher


def run(coro):
    return asyncio.run(coro)


def recording_model(seen: list, delay: float, scale: int = 1):
    """A fake batch model that records each batch it gets and takes `delay` seconds."""
    async def model(items):
        seen.append(list(items))
        await asyncio.sleep(delay)
        return [i * scale for i in items]
    return model


def test_simultaneous_calls_share_one_batch_and_get_their_own_results():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.05, 10), max_size=8, wait_s=0.01)
        return await asyncio.gather(*(b.submit(i) for i in range(5)))

    assert run(main()) == [0, 10, 20, 30, 40]
    assert seen == [[0, 1, 2, 3, 4]]


def test_calls_arriving_during_a_batch_form_the_next_batch_together():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.2), max_size=8, wait_s=0.0)

        async def later(i, delay):
            await asyncio.sleep(delay)
            return await b.submit(i)

        return await asyncio.gather(later(0, 0), later(1, 0.05), later(2, 0.06), later(3, 0.07))

    assert run(main()) == [0, 1, 2, 3]
    assert seen == [[0], [1, 2, 3]]


def test_max_size_splits_and_errors_reach_every_caller_of_the_batch():
    async def model(items):
        if 99 in items:
            raise ValueError("bad batch")
        return items

    async def main():
        b = DrainBatcher(model, max_size=2, wait_s=0.01)
        ok = await asyncio.gather(*(b.submit(i) for i in range(5)))
        sizes = list(b.batch_sizes)
        bad = await asyncio.gather(b.submit(99), b.submit(1), return_exceptions=True)
        return ok, sizes, bad

    ok, sizes, bad = run(main())
    assert ok == [0, 1, 2, 3, 4] and sizes == [2, 2, 1]
    assert all(isinstance(e, ValueError) for e in bad)


def test_a_caller_that_went_away_is_skipped():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.05), max_size=8, wait_s=0.02)
        gone = asyncio.ensure_future(b.submit(7))
        await asyncio.sleep(0)
        gone.cancel()
        assert await b.submit(3) == 3
        with pytest.raises(asyncio.CancelledError):
            await gone

    run(main())
    assert seen == [[3]]
