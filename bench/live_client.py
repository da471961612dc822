"""WebSocket clients for the live transcription endpoints, shared by tests and benchmarks.

They stream audio in fixed chunks, paced at `speed` x real time (0 = as fast
as possible), and record every server message with its arrival time and the
send time of every chunk, so latency can be measured from the client side.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

import numpy as np
import websockets

from speechcore.audio import float_to_pcm16

SR = 16000


@dataclass
class LiveRun:
    events: list[dict] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    chunk_sent: list[float] = field(default_factory=list)   # send time of each chunk
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str | None = None, final: bool | None = None) -> list[dict]:
        out = []
        for e in self.events:
            if kind is not None and e.get("type") != kind:
                continue
            if final is not None and e.get("is_final") is not final:
                continue
            out.append(e)
        return out

    def finals(self) -> list[dict]:
        return [e for e in self.events if e.get("is_final") is True]

    def errors(self) -> list[dict]:
        return [e for e in self.events if e.get("type") == "error" or "error" in e]


def platform_message(chunk: np.ndarray) -> str:
    return json.dumps({"audio_event": {"audio_base_64": base64.b64encode(float_to_pcm16(chunk)).decode()}})


async def run_stream(url: str, messages: list, speed: float = 1.0, chunk_s: float = 0.1,
                     first: list | None = None, last: list | None = None, close_after: bool = False) -> LiveRun:
    """Send `first` (unpaced), then `messages` paced at `speed` x real time, then `last`; read until closed."""
    run = LiveRun()
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        reader = asyncio.create_task(_read(ws, run))
        try:
            for m in first or []:
                await ws.send(m)
            start = time.perf_counter()
            for i, m in enumerate(messages):
                if speed > 0:
                    await asyncio.sleep(max(0.0, start + i * chunk_s / speed - time.perf_counter()))
                await ws.send(m)
                run.chunk_sent.append(time.perf_counter())
            for m in last or []:
                await ws.send(m)
            if close_after:
                await ws.close()
        except websockets.ConnectionClosed:
            pass                    # the server ended the session (its reason is in the events read)
        await reader
    return run


async def _read(ws, run: LiveRun) -> None:
    try:
        async for raw in ws:
            run.events.append(json.loads(raw))
            run.arrivals.append(time.perf_counter())
    except websockets.ConnectionClosed:
        pass
    run.close_code = ws.close_code
    run.close_reason = ws.close_reason or ""


def chunks(audio: np.ndarray, chunk_s: float = 0.1, rate: int = SR) -> list[np.ndarray]:
    step = int(chunk_s * rate)
    return [audio[i:i + step] for i in range(0, audio.size, step)]


async def stream_platform(base_ws: str, audio: np.ndarray, speed: float = 1.0, query: str = "",
                          end: bool = True, chunk_s: float = 0.1) -> LiveRun:
    url = f"{base_ws}/ws/transcribe/vad{'?' + query if query else ''}"
    return await run_stream(url, [platform_message(c) for c in chunks(audio, chunk_s)], speed, chunk_s,
                            last=[json.dumps({"type": "end"})] if end else None)


def final_latencies(run: LiveRun, turn_ends: list[int]) -> list[float]:
    """Seconds from sending the last speech chunk of turn k (`turn_ends[k]`, a chunk index) to final k."""
    finals = [t for e, t in zip(run.events, run.arrivals) if e.get("is_final") is True]
    if len(finals) != len(turn_ends):      # turns did not split as the clips do: no latency to pair up
        return []
    return [t - run.chunk_sent[k] for t, k in zip(finals, turn_ends)]
