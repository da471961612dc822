"""Hardening measurements (issue 8): memory across a long run of large requests, and how many
stalled uploads and idle live sessions the server holds while /health stays fast.

1. RSS of every process before and after N large TTS requests (OpenAI `/v1/audio/speech`,
   `--chars` characters with no sentence break) and N transcriptions of a long clip.
2. /health latency (median of 5) while K stalled uploads (headers sent, body never finished)
   or K idle WebSocket sessions are open, for growing K.

Run: `.venv/bin/python bench/hardening.py [--requests 200] [--chars 4096]` (starts its own app).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, process_tree_rss, table  # noqa: E402

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "


def rss_by_process() -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for name, mib in process_tree_rss():
        out[name] += mib
    return dict(out)


def long_clip(seconds: float = 60.0) -> bytes:
    from speechcore.audio import decode_audio, wav_bytes
    from tests.speech import librivox

    clips = [decode_audio(p.read_bytes()) for p in sorted(librivox())]
    audio = np.concatenate(clips * int(1 + seconds * 16000 // sum(map(len, clips))))[: int(seconds * 16000)]
    return wav_bytes(audio)


async def load(base: str, requests: int, chars: int, concurrency: int = 2) -> dict[str, list[float]]:
    text = (WORDS * (chars // len(WORDS) + 1))[:chars]
    clip = long_clip()
    took: dict[str, list[float]] = defaultdict(list)
    sem = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, kind: str) -> None:
        async with sem:
            t0 = time.perf_counter()
            if kind == "tts":
                r = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": text, "voice": "alloy",
                                                                "response_format": "wav"})
            else:
                r = await client.post("/v1/audio/transcriptions", files={"file": ("long.wav", clip)},
                                      data={"model": "whisper-1"})
            r.raise_for_status()
            took[kind].append(time.perf_counter() - t0)

    async with httpx.AsyncClient(base_url=base, timeout=1800) as client:
        await asyncio.gather(*(one(client, k) for _ in range(requests) for k in ("tts", "asr")))
    return took


async def health_ms(client: httpx.AsyncClient) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        (await client.get("/health")).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def hold(base: str, kind: str, count: int) -> tuple[int, float]:
    """Open `count` stalled uploads or idle sessions; (how many are open, /health ms meanwhile)."""
    import websockets

    host, port = base.removeprefix("http://").split(":")
    opened = []
    for _ in range(count):
        try:
            if kind == "stalled uploads":
                _, w = await asyncio.open_connection(host, int(port))
                w.write(b"POST /v1/speech/transcribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
                opened.append(w)
            else:
                opened.append(await websockets.connect(f"ws://{host}:{port}/v1/speech/stream", open_timeout=30))
        except Exception:
            break
    await asyncio.sleep(1.0)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        ms = await health_ms(client)
    for c in opened:
        res = c.close()
        if asyncio.iscoroutine(res):
            await res
    return len(opened), ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chars", type=int, default=4096)
    parser.add_argument("--holds", type=int, nargs="*", default=[100, 300, 1000])
    args = parser.parse_args()
    from graphs import launch

    port = free_port()
    launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))
    base = f"http://127.0.0.1:{port}"
    launch.wait_ready(base, 600)
    try:
        before = rss_by_process()
        took = asyncio.run(load(base, args.requests, args.chars))
        after = rss_by_process()
        rows = [[name, before.get(name, 0.0), after.get(name, 0.0), after.get(name, 0.0) - before.get(name, 0.0)]
                for name in sorted(set(before) | set(after), key=lambda n: -after.get(n, 0.0))]
        table(f"RSS (MiB) before/after {args.requests} TTS ({args.chars} chars) + {args.requests} transcriptions "
              f"(60 s); median s: tts {statistics.median(took['tts']):.1f}, asr {statistics.median(took['asr']):.1f}",
              ["process", "before", "after", "delta"], rows)
        holds = [[kind, k, *asyncio.run(hold(base, kind, k))] for kind in ("stalled uploads", "idle sessions")
                 for k in args.holds]
        table("/health while clients are held open", ["clients", "attempted", "held open", "/health ms (median)"],
              holds)
    finally:
        launch.stop()


if __name__ == "__main__":
    main()
