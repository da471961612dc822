"""Voice-to-voice latency over WebRTC against /ws/voice-chat on the same audio, and concurrent WebRTC peers.

    python bench/webrtc.py [--rounds 3] [--peers 1,2,3]

Starts configs/serve_cpu.yaml on a private Ray instance. One turn: a LibriVox
question (clip 0880, 2.9 s) is sent at real time, followed by silence. Latency
is measured at the client from the end of the question's speech leaving the
client to the arrival of the first agent audio louder than -40 dBFS: over
WebRTC through the aiortc client peer of tests/rtc_client.py (Opus both ways,
paced tracks), over /ws/voice-chat as 100 ms binary PCM frames. Concurrent
peers start their turns together; a level is held when p95 stays under 1.5 s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, percentile, table  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.audio import SAMPLE_RATE, decode_audio, float_to_pcm16  # noqa: E402
from tests.rtc_client import Client, settled, speech_48k  # noqa: E402
from tests.speech import librivox  # noqa: E402

QUESTION = next(p for p in librivox() if p.name.endswith("0880.wav"))
PROMPT = "You are a friendly assistant. Answer in one short sentence."
LOUD = 0.01


async def webrtc_turn(base_url: str) -> float | None:
    """Seconds from the end of the question to the first loud agent audio; None: no answer within 60 s."""
    client = Client(base_url)
    try:
        await client.connect(language="en", user_system_prompt=PROMPT)
        speech = speech_48k(QUESTION)
        client.mic.push(speech)
        spoken_end = time.monotonic() + client.mic.queued_s        # the queue plays out in real time
        for _ in range(1200):
            loud = [at for at, c in client.audio if at > spoken_end and np.sqrt((c ** 2).mean()) > LOUD]
            if loud:
                return loud[0] - spoken_end
            await asyncio.sleep(0.05)
        return None
    finally:
        await client.close()


async def ws_turn(base_url: str) -> float:
    from websockets.asyncio.client import connect
    audio = decode_audio(str(QUESTION))
    frame = SAMPLE_RATE // 10
    async with connect(base_url.replace("http", "ws") + "/ws/voice-chat", max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "language": "en", "system_prompt": PROMPT}))
        while json.loads(await ws.recv()).get("type") != "ready":
            pass
        start = time.monotonic()
        padded = np.concatenate([audio, np.zeros(SAMPLE_RATE * 20, np.float32)])
        spoken_end = start + len(audio) / SAMPLE_RATE
        first: list[float] = []

        async def send() -> None:
            for i in range(0, len(padded), frame):
                await asyncio.sleep(max(0.0, start + i / SAMPLE_RATE - time.monotonic()))
                await ws.send(float_to_pcm16(padded[i:i + frame]))

        sender = asyncio.ensure_future(send())
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    pcm = np.frombuffer(message, np.int16).astype(np.float32) / 32768
                    if np.sqrt((pcm ** 2).mean()) > LOUD:
                        first.append(time.monotonic())
                        break
        finally:
            sender.cancel()
        return first[0] - spoken_end


async def after_settled(base_url: str, n: int) -> list[float | None]:
    """`n` peers' turns together, once the server has closed earlier peers (it does so by their media
    timeout after the client leaves; until then they count against the peer limit)."""
    await settled(base_url)
    return list(await asyncio.gather(*[webrtc_turn(base_url) for _ in range(n)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", default="1,2,3")
    args = ap.parse_args()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))     # deploys the CPU profile
    try:
        launch.wait_ready(base_url)
        asyncio.run(webrtc_turn(base_url))                                     # warm-up
        ws = [asyncio.run(ws_turn(base_url)) for _ in range(args.rounds)]
        rtc = [v for _ in range(args.rounds) for v in asyncio.run(after_settled(base_url, 1)) if v is not None]
        base = percentile(ws, 50)
        table("Voice-to-voice latency, one turn (end of the question -> first agent audio), CPU profile",
              ["transport", "turns", "p50 ms", "p95 ms", "x /ws/voice-chat p50"],
              [["/ws/voice-chat", len(ws), base * 1000, percentile(ws, 95) * 1000, 1.0],
               ["WebRTC", len(rtc), percentile(rtc, 50) * 1000, percentile(rtc, 95) * 1000,
                percentile(rtc, 50) / base]])
        rows = []
        for n in [int(x) for x in args.peers.split(",")]:
            turns = [v for _ in range(args.rounds) for v in asyncio.run(after_settled(base_url, n))]
            lat = [v for v in turns if v is not None]
            p95 = percentile(lat, 95) if lat else float("inf")
            rows.append([n, len(turns), len(turns) - len(lat), percentile(lat, 50) * 1000 if lat else "",
                         p95 * 1000 if lat else "", "yes" if p95 <= 1.5 and len(lat) == len(turns) else "no"])
        table("Concurrent WebRTC peers, one turn each (held: every turn answered, p95 <= 1.5 s)",
              ["peers", "turns", "unanswered in 60 s", "p50 ms", "p95 ms", "held"], rows)
    finally:
        launch.stop()


if __name__ == "__main__":
    main()
