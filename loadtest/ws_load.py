"""Async WebSocket load: N concurrent live sessions, each streaming recorded speech at real time through a
pluggable protocol (clients.live: platform or gateway transcription), reporting latency percentiles per
event type and errors; and the request/response families through the client's own classes
(clients.sockets): `/ws/tts` (time to first audio and total per request) and `/ws/voice-chat`
(voice-to-voice: last speech chunk sent -> first agent audio byte).

Each stream sends clips separated by pauses; a final's latency is measured from the send time of the
last chunk holding its clip's speech to the final's arrival (what a caller waits once they stop talking);
`first_partial` from the turn's first speech chunk to its first partial.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import numpy as np
import websockets

from clients.calls import SpeechError
from clients.live import PROTOCOLS
from clients.sockets import TtsSocket, VoiceChat
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
    """`n` concurrent live transcription sessions."""
    return await run_clients(n, lambda samples, delay: stream(base_ws, protocol, plan, samples, delay, query),
                             stagger_s)

async def tts_client(base_url: str, texts: list[str], duration_s: float, samples: Samples,
                     start_delay_s: float = 0.0) -> None:
    """One `/ws/tts` connection sending its next request when the last one has been answered, for `duration_s`."""
    await asyncio.sleep(start_delay_s)
    deadline = time.perf_counter() + duration_s
    try:
        async with TtsSocket(base_url) as tts:
            i = 0
            while time.perf_counter() < deadline:
                sent, first = time.perf_counter(), None
                try:
                    async for _ in tts.speak(texts[i % len(texts)], language="en"):
                        first = first or time.perf_counter()
                except SpeechError as err:
                    samples.fail(f"event {err.code}")
                    continue
                if first is None:
                    samples.fail("no audio")
                    continue
                samples.add("first_audio", first - sent)
                samples.add("total", time.perf_counter() - sent)
                i += 1
    except (OSError, websockets.WebSocketException) as err:
        samples.fail(type(err).__name__)


async def voice_chat_client(base_url: str, question: np.ndarray, rounds: int, samples: Samples,
                            start_delay_s: float = 0.0, max_tokens: int = 24) -> None:
    """One session asking the spoken `question` `rounds` times at real time, waiting for each answer's end."""
    await asyncio.sleep(start_delay_s)
    silence = np.zeros(SR, dtype=np.float32)            # the pause that ends the turn (silence_ms 500)
    try:
        async with VoiceChat(base_url, {"language": "en", "max_tokens": max_tokens}) as chat:
            for _ in range(rounds):
                spoken = await chat.send_audio(question)
                pause = asyncio.create_task(chat.send_audio(silence))
                events = await chat.turn(quiet_s=1.5)
                await pause
                for e in events:
                    if e.kind in ("error", "disconnect"):
                        samples.fail(f"event {e.raw.get('code') or e.raw.get('reason')}")
                audio = [e.at for e in events if e.kind == "audio"]
                if audio:
                    samples.add("voice_to_voice", audio[0] - spoken)
                else:
                    samples.fail("no agent audio")
    except (OSError, websockets.WebSocketException, SpeechError) as err:
        samples.fail(getattr(err, "code", type(err).__name__))


async def run_clients(n: int, make: Callable[[Samples, float], Awaitable[None]], stagger_s: float = 1.0) -> Samples:
    """`n` concurrent clients `make(samples, start_delay_s)`, starts spread over `stagger_s` (so turns and
    requests do not line up in lockstep)."""
    samples = Samples()
    await asyncio.gather(*(make(samples, i * stagger_s / max(1, n)) for i in range(n)))
    return samples
