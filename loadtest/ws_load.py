"""Async WebSocket load: N concurrent live sessions, each streaming recorded speech at real time through a
pluggable protocol (clients.live: platform or gateway transcription; TTS and voice chat plug in the same
way), reporting latency percentiles per event type and errors.

Each stream sends clips separated by pauses; a final's latency is measured from the send time of the
last chunk holding its clip's speech to the final's arrival (what a caller waits once they stop talking);
`first_partial` from the turn's first speech chunk to its first partial.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import websockets

from clients.live import PROTOCOLS
from loadtest.stats import Samples

SR = 16000


@dataclass(frozen=True)
class Script:
    """What a stream sends: audio and, per turn, the chunk indices of its first and last speech."""
    audio: np.ndarray
    turns: list[tuple[int, int]]
    chunk_s: float = 0.1


def script(clips: list[np.ndarray], pause_s: float = 1.5, chunk_s: float = 0.1) -> Script:
    step, parts, turns, at = int(chunk_s * SR), [], [], 0
    for clip in clips:
        clip = np.concatenate([clip, np.zeros((-clip.size) % step, dtype=np.float32)])
        turns.append((at // step, (at + clip.size) // step - 1))
        pause = np.zeros(int(pause_s * SR) // step * step, dtype=np.float32)
        parts += [clip, pause]
        at += clip.size + pause.size
    return Script(np.concatenate(parts), turns, chunk_s)


async def stream(url: str, protocol: str, plan: Script, samples: Samples, start_delay_s: float = 0.0,
                 query: str = "") -> None:
    proto = PROTOCOLS[protocol]()
    await asyncio.sleep(start_delay_s)
    step = int(plan.chunk_s * SR)
    sent: list[float] = []
    finals: list[float] = []
    partials: dict[int, float] = {}
    try:
        async with websockets.connect(url + proto.path + (f"?{query}" if query else ""), max_size=None, open_timeout=60) as ws:
            async def send() -> None:
                for m in proto.start():
                    await ws.send(m)
                t0 = time.perf_counter()
                for i, at in enumerate(range(0, plan.audio.size, step)):
                    await asyncio.sleep(max(0.0, t0 + i * plan.chunk_s - time.perf_counter()))
                    await ws.send(proto.audio(plan.audio[at:at + step]))
                    sent.append(time.perf_counter())
                for m in proto.end():
                    await ws.send(m)
            sender = asyncio.create_task(send())
            async for message in ws:
                event, now = proto.event(message), time.perf_counter()
                if event.kind == "error":
                    samples.fail(f"event {event.raw.get('code') or event.raw.get('error', {}).get('code')}")
                elif event.kind == "final":
                    finals.append(now)
                elif event.kind == "partial":
                    partials.setdefault(len(finals), now)
            await sender
            if ws.close_code not in (1000, None):
                samples.fail(f"close {ws.close_code}")
    except (OSError, websockets.WebSocketException) as err:
        samples.fail(type(err).__name__)
        return
    if len(finals) != len(plan.turns):
        samples.fail(f"{len(finals)} finals for {len(plan.turns)} turns")
        return
    for k, ((first, last), at) in enumerate(zip(plan.turns, finals)):
        samples.add("final", at - sent[last])
        if k in partials:
            samples.add("first_partial", partials[k] - sent[first])


async def run_streams(base_ws: str, protocol: str, plan: Script, n: int, stagger_s: float = 1.0,
                      query: str = "") -> Samples:
    """`n` concurrent sessions, starts spread over `stagger_s` (so turns do not end in lockstep)."""
    samples = Samples()
    await asyncio.gather(*(stream(base_ws, protocol, plan, samples, i * stagger_s / max(1, n), query)
                           for i in range(n)))
    return samples
