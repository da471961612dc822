"""DrainBatcher: batches form from what queued while the model was busy, by lane and audio seconds."""
from __future__ import annotations

import asyncio
import json
import pickle

import numpy as np
import pytest

from speechcore.batching import (BatchConfig, DrainBatcher, Failed, Overloaded, isolate_failures, join_transcripts,
                                 split_request, unwrap)
from speechcore.schemas import ASRRequest, Segment, TranscribeOptions, Transcript


def run(coro):
    return asyncio.run(coro)


def config(budget: float = 8, wait_s: float = 0.01, **kw) -> BatchConfig:
    return BatchConfig(max_batch_audio_s=budget, batch_wait_s=wait_s, **kw)


def recording_model(seen: list, delay: float, scale: int = 1):
    """A fake batch model that records each batch it gets and takes `delay` seconds."""
    async def model(items, stopped):
        seen.append(list(items))
        await asyncio.sleep(delay)
        return [i * scale for i in items]
    return model


def test_simultaneous_calls_share_one_batch_and_get_their_own_results():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.05, 10), config(8))
        return await asyncio.gather(*(b.submit(i) for i in range(5)))

    assert run(main()) == [0, 10, 20, 30, 40]
    assert seen == [[0, 1, 2, 3, 4]]


def test_calls_arriving_during_a_batch_form_the_next_batch_together():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.2), config(8, wait_s=0.0))

        async def later(i, delay):
            await asyncio.sleep(delay)
            return await b.submit(i)

        return await asyncio.gather(later(0, 0), later(1, 0.05), later(2, 0.06), later(3, 0.07))

    assert run(main()) == [0, 1, 2, 3]
    assert seen == [[0], [1, 2, 3]]


def test_the_audio_budget_splits_batches_and_a_failing_item_fails_alone():
    seen = []

    async def model(items, stopped):
        seen.append(list(items))
        if 99 in items:
            raise ValueError("bad item")
        return items

    async def main():
        b = DrainBatcher(model, config(2))
        ok = await asyncio.gather(*(b.submit(i) for i in range(5)))
        sizes = list(b.batch_sizes)
        bad = await asyncio.gather(b.submit(99), b.submit(1), return_exceptions=True)
        return ok, sizes, bad

    ok, sizes, bad = run(main())
    assert ok == [0, 1, 2, 3, 4] and sizes == [2, 2, 1]
    assert isinstance(bad[0], ValueError) and bad[1] == 1          # only the NaN-like item errors
    assert seen[-3:] == [[99, 1], [99], [1]]                        # the batch, then each item alone


def test_budget_counts_audio_seconds_not_requests():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.01), config(10))
        costs = {1: 6.0, 2: 3.0, 3: 2.0, 4: 1.0, 5: 1.0}
        await asyncio.gather(*(b.submit(i, cost) for i, cost in costs.items()))

    run(main())
    assert seen == [[1, 2], [3, 4, 5]]      # 6+3 fits 10 s, +2 would not; 2+1+1 next


def test_interactive_work_goes_first_and_never_shares_a_batch_with_bulk():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.1), config(100, wait_s=0.0))
        first = asyncio.ensure_future(b.submit("bulk-0", 5, "bulk"))
        await asyncio.sleep(0.02)            # bulk-0 is running; everything below queues behind it
        rest = [b.submit("bulk-1", 5, "bulk"), b.submit("bulk-2", 5, "bulk"),
                b.submit("partial", 1, "interactive"), b.submit("final", 2, "interactive")]
        await asyncio.gather(first, *rest)

    run(main())
    assert seen == [["bulk-0"], ["partial", "final"], ["bulk-1", "bulk-2"]]


def test_a_full_lane_refuses_at_once_with_retry_after_while_admitted_work_completes():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.05), config(100, max_requests={"interactive": None, "bulk": 2},
                                                             max_audio_s={"interactive": None, "bulk": 50}))

        async def upload(i, seconds):
            with b.admitted("bulk", seconds):
                return await b.submit(i, seconds, "bulk")

        outcomes = await asyncio.gather(upload(1, 10), upload(2, 10), upload(3, 10), return_exceptions=True)
        big = await asyncio.gather(upload(4, 30), upload(5, 30), return_exceptions=True)
        alone = await upload(6, 500)          # an empty lane admits anything under the length limit
        live = await asyncio.gather(*(b.submit(i, 1, "interactive") for i in range(10)))   # unbounded lane
        return outcomes, big, alone, live

    outcomes, big, alone, live = run(main())
    assert outcomes[:2] == [1, 2] and isinstance(outcomes[2], Overloaded)
    refused = outcomes[2]
    assert refused.status == 429 and refused.retry_after_s >= 1 and "bulk" in refused.message
    assert big[0] == 4 and isinstance(big[1], Overloaded)       # 30 + 30 s > 50 s of bulk audio
    assert alone == 6 and live == list(range(10))
    assert [3] not in seen and [5] not in seen                   # refused work never ran


def test_a_caller_that_went_away_is_skipped():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.05), config(8, wait_s=0.02))
        gone = asyncio.ensure_future(b.submit(7))
        await asyncio.sleep(0)
        gone.cancel()
        assert await b.submit(3) == 3
        with pytest.raises(asyncio.CancelledError):
            await gone

    run(main())
    assert seen == [[3]]


def test_a_running_batch_is_told_when_all_its_callers_went_away():
    checks = []

    async def model(items, stopped):
        for _ in range(20):                  # a decode that looks at each segment boundary
            checks.append(stopped())
            if stopped():
                return items
            await asyncio.sleep(0.01)
        return items

    async def main():
        b = DrainBatcher(model, config(8, wait_s=0.0))
        calls = [asyncio.ensure_future(b.submit(i)) for i in range(2)]
        await asyncio.sleep(0.03)
        calls[0].cancel()
        await asyncio.sleep(0.03)
        assert checks[-1] is False           # one caller is still waiting
        calls[1].cancel()
        await asyncio.sleep(0.03)

    run(main())
    assert checks[-1] is True and len(checks) < 20


def test_serve_batch_methods_isolate_a_failing_item():
    calls = []

    async def frames(batch):
        calls.append(list(batch))
        if any(np.isnan(x).any() for x in batch):
            raise ValueError("NaN input")
        return [x * 2 for x in batch]

    good, bad = np.ones(3), np.array([1.0, np.nan])
    out = run(isolate_failures(frames, [good, bad, good]))
    assert np.array_equal(unwrap(out[0]), good * 2) and np.array_equal(unwrap(out[2]), good * 2)
    assert isinstance(out[1], Failed)
    with pytest.raises(ValueError, match="NaN"):
        unwrap(out[1])
    assert len(calls) == 4                   # the batch once, then each item alone


def test_bulk_requests_split_into_budget_pieces_and_join_in_order():
    audio = np.zeros(16000 * 100, np.float32)
    request = ASRRequest(audio, [(0, 20), (21, 40), (41, 45), (50, 90)], TranscribeOptions(), lane="bulk")
    pieces = split_request(request, 40)
    assert [p.clips for p in pieces] == [[(0, 20), (21, 40)], [(41, 45)], [(50, 90)]]
    assert all(p.audio is audio and p.lane == "bulk" for p in pieces)

    def part(text, start):
        return Transcript(text, "en", 0.9, 100.0, [Segment(0, start, start + 1, text)], "m")

    silent = Transcript("", "en", 0.9, 100.0, [], "m")
    joined = join_transcripts([part("one", 0), part("two", 41), silent, part("three", 50)])
    assert joined.text == "one two three"
    assert [(s.id, s.text) for s in joined.segments] == [(0, "one"), (1, "two"), (2, "three")]
    assert joined.language == "en" and joined.duration == 100.0


def test_refusals_render_429_with_retry_after_in_each_family_shape():
    from graphs.middleware import error_response
    from graphs.routers import gateway_speech, openai_audio  # noqa: F401  (register their families)
    from speechcore.errors import family_of

    refused = Overloaded("bulk", 7.2)
    for path, body in [("/v1/speech/transcribe", {"error": {"code": "overloaded", "message": refused.message}}),
                       ("/v1/audio/transcriptions", {"error": {"message": refused.message, "type": "requests",
                                                               "param": None, "code": "overloaded"}}),
                       ("/transcribe", {"detail": refused.message})]:
        response = error_response(path, refused)
        assert response.status_code == 429 and response.headers["retry-after"] == "8"
        assert json.loads(response.body) == body, family_of(path)


def test_api_errors_survive_pickling_with_every_field():
    err = pickle.loads(pickle.dumps(Overloaded("bulk", 3.0)))
    assert isinstance(err, Overloaded) and (err.status, err.code, err.retry_after_s) == (429, "overloaded", 3.0)


def test_the_timeout_grows_with_the_audio_so_a_file_under_the_length_limit_never_times_out():
    from graphs.services import timeout_for
    from speechcore.settings import get_settings

    settings = get_settings()
    worst_cpu_rtf = 0.19      # whisper-base on the CPU profile, README "Serving overhead" (seconds per audio second)
    longest = settings.max_audio_seconds
    assert timeout_for(longest) - settings.request_timeout_s >= 5 * worst_cpu_rtf * longest   # 5x margin for load
    assert timeout_for(10.0) < timeout_for(60.0) < timeout_for(3600.0)


def test_bulk_batches_have_their_own_smaller_budget():
    seen = []

    async def main():
        b = DrainBatcher(recording_model(seen, 0.01), config(100, bulk_batch_audio_s=20))
        await asyncio.gather(*(b.submit(i, 10, "bulk") for i in range(3)), *(b.submit(i, 10) for i in (7, 8, 9)))

    run(main())
    assert seen == [[7, 8, 9], [0, 1], [2]]
