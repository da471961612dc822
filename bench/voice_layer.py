"""Voice layer (/v1/voice/ws) latency at 1 and 4 concurrent sessions (issue 14).

Each session configures (server LLM, pcm_24000, 0.5 s silence ends a turn), streams a LibriVox
clip at real time in 100 ms binary frames, then silence, and waits for the spoken answer. Measured
from the client: end of speech (the last speech frame sent) -> `transcript.committed`, and
`transcript.committed` -> the first `assistant.audio.chunk`. Baseline, in the same run on the same
app: the same clip on `/v1/speech/stream` (live transcription alone), end of speech -> its final.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/voice_layer.py [--rounds 3]`
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, percentile, table  # noqa: E402
from bench.live_client import chunks, run_stream  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.audio import decode_audio, float_to_pcm16  # noqa: E402
from speechcore.settings import get_settings  # noqa: E402

CLIP = "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
CONFIG = {"type": "session.configure", "stt": {"language_code": "en", "vad_silence_threshold_secs": 0.5},
          "tts": {"output_format": "pcm_24000"}}
TAIL_S = 2.0


async def voice_session(url: str, speech: np.ndarray) -> tuple[float, float]:
    """(end of speech -> committed, committed -> first audio chunk) in seconds."""
    frames = chunks(np.concatenate([speech, np.zeros(int(TAIL_S * 16000), np.float32)]))
    speech_frames = -(-speech.size // 1600)
    marks: dict[str, float] = {}
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps(CONFIG))

        async def read() -> None:
            async for raw in ws:
                kind = json.loads(raw)["type"]
                marks.setdefault(kind, time.perf_counter())
                if kind in ("assistant.audio.chunk", "error"):
                    return

        reader = asyncio.create_task(read())
        while "stt.session_started" not in marks:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + i * 0.1 - time.perf_counter()))
            await ws.send(float_to_pcm16(frame))
            if i == speech_frames - 1:
                marks["speech_end"] = time.perf_counter()
        await asyncio.wait_for(reader, 300)
    if "error" in marks:
        raise RuntimeError("the session answered an error")
    return marks["transcript.committed"] - marks["speech_end"], \
        marks["assistant.audio.chunk"] - marks["transcript.committed"]


async def baseline(url: str, speech: np.ndarray) -> float:
    """End of speech -> final on /v1/speech/stream (live transcription alone)."""
    audio = np.concatenate([speech, np.zeros(int(TAIL_S * 16000), np.float32)])
    frames = [float_to_pcm16(c) for c in chunks(audio)]
    config = json.dumps({"type": "config", "encoding": "pcm16", "sample_rate": 16000, "language": "en",
                         "silence_ms": 500})
    run = await run_stream(url, frames, first=[config], last=[json.dumps({"type": "end"})])
    final = next(t for e, t in zip(run.events, run.arrivals) if e.get("is_final"))
    return final - run.chunk_sent[-(-speech.size // 1600) - 1]


async def round_of(fn, url: str, speech: np.ndarray, concurrency: int) -> list:
    return list(await asyncio.gather(*[fn(url, speech) for _ in range(concurrency)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    speech = decode_audio((get_settings().fixtures_dir / CLIP).read_bytes())
    port = free_port()
    config = launch.load_config("configs/serve_cpu.yaml", port=port)
    launch.start(config)
    rows = []
    try:
        launch.deploy(config)
        launch.wait_ready(f"http://127.0.0.1:{port}")
        ws = f"ws://127.0.0.1:{port}"
        asyncio.run(voice_session(f"{ws}/v1/voice/ws", speech))             # warm-up
        for concurrency in (1, 4):
            base = [x for _ in range(args.rounds)
                    for x in asyncio.run(round_of(baseline, f"{ws}/v1/speech/stream", speech, concurrency))]
            voice = [x for _ in range(args.rounds)
                     for x in asyncio.run(round_of(voice_session, f"{ws}/v1/voice/ws", speech, concurrency))]
            committed, first_audio = [c for c, _ in voice], [a for _, a in voice]
            b50 = percentile(base, 50)
            rows.append(["/v1/speech/stream final (baseline)", concurrency, b50 * 1000, percentile(base, 95) * 1000,
                         1.0])
            rows.append(["/v1/voice/ws transcript.committed", concurrency, percentile(committed, 50) * 1000,
                         percentile(committed, 95) * 1000, percentile(committed, 50) / b50])
            rows.append(["/v1/voice/ws committed -> first audio", concurrency, percentile(first_audio, 50) * 1000,
                         percentile(first_audio, 95) * 1000, percentile(first_audio, 50) / b50])
    finally:
        launch.stop()
    table(f"Voice layer latency, CPU profile, {args.rounds} rounds per row",
          ["what", "sessions", "p50 ms", "p95 ms", "p50 x baseline"], rows)


if __name__ == "__main__":
    main()
