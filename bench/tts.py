"""Streaming TTS (issue 11): time to first audio byte, real-time factor, ASR round trip, concurrency.

1. Latency: a 1-sentence and a 10-sentence English text with the default voice (Piper joe), through
   `WS /ws/tts`, streamed `POST /v1/audio/speech` (pcm) and in-process (the Piper backend called
   directly with the same sentence/clause pieces and 24 kHz resampling: no Ray, no HTTP; the
   baseline). TTFB = request sent -> first audio byte; RTF = total time / audio seconds. Medians of
   `--repeats` runs; `ttfb / total` near 1 would mean the audio is buffered, not streamed.
2. Round trip: one sentence per language through each voice (`/api/speakers`), transcribed back by
   the server's ASR (Whisper base, language given); WER on words, CER for ja/zh/ko (no word spaces).
3. Concurrency: `--clients` WebSocket clients each ask for the 10-sentence text at once; TTFB p50/p95
   against the single-client TTFB measured in the same run.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/tts.py` (starts its own app; about 5 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, percentile, table  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.audio import resample, wav_bytes  # noqa: E402
from speechcore.text import stream_pieces  # noqa: E402
from speechcore.textmetrics import error_rate  # noqa: E402

RATE = 24000
SENTENCES = ["The weather is nice today, so we are going to the park.", "My sister will bring some sandwiches.",
             "We should leave before noon to avoid the traffic.", "The children want to play football.",
             "I will take the blue blanket from the cupboard.", "Please remember to pack the sun cream.",
             "After lunch we can walk along the river.", "The museum opens again at three o'clock.",
             "We could visit it on the way home.", "Let me know if you need anything else."]
TEXTS = {"1 sentence": SENTENCES[0], "10 sentences": " ".join(SENTENCES)}
ROUND_TRIP = {"en": "The weather is nice today, and we are going to the park.",
              "fr": "Il fait beau aujourd'hui et nous allons au parc.",
              "vi": "Hôm nay trời đẹp và chúng tôi sẽ đi công viên.",
              "ja": "今日はいい天気なので、公園に行きます。",
              "ko": "오늘은 날씨가 좋아서 공원에 갑니다.",
              "zh": "今天天气很好，我们去公园。",
              "ru": "Сегодня хорошая погода, и мы идём в парк.",
              "de": "Heute ist das Wetter schön und wir gehen in den Park.",
              "es": "Hoy hace buen tiempo y vamos al parque."}
BY_CHARACTER = ("ja", "zh", "ko")


async def ws_tts(ws_url: str, request: dict) -> tuple[float, float, bytes]:
    """(ttfb s, total s, pcm) of one /ws/tts request on a fresh connection."""
    async with websockets.connect(f"{ws_url}/ws/tts", max_size=None) as ws:
        t0 = time.perf_counter()
        await ws.send(json.dumps(request))
        first, frames = None, []
        while True:
            msg = await ws.recv()
            if isinstance(msg, bytes):
                first = first or time.perf_counter()
                frames.append(msg)
            else:
                event = json.loads(msg)
                if event["type"] != "end":
                    raise RuntimeError(event)
                return (first or time.perf_counter()) - t0, time.perf_counter() - t0, b"".join(frames)


def http_tts(base: str, text: str) -> tuple[float, float, bytes]:
    t0 = time.perf_counter()
    first, parts = None, []
    with httpx.stream("POST", f"{base}/v1/audio/speech", timeout=600,
                      json={"model": "tts-1", "input": text, "response_format": "pcm"}) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            first = first or time.perf_counter()
            parts.append(chunk)
    return first - t0, time.perf_counter() - t0, b"".join(parts)


def in_process(backend, text: str) -> tuple[float, float, bytes]:
    t0 = time.perf_counter()
    first, parts = None, []
    for piece in stream_pieces(text):
        for chunk in backend.synthesize(piece):
            parts.append((np.clip(resample(chunk.audio, chunk.sample_rate, RATE), -1, 1) * 32767).astype("<i2").tobytes())
            first = first or time.perf_counter()
    return first - t0, time.perf_counter() - t0, b"".join(parts)


def latency_rows(base: str, repeats: int) -> list[list]:
    from speechcore.backends.piper_tts import PiperTTS
    from speechcore.spec import BackendSpec

    backend = PiperTTS(BackendSpec(backend="piper", model="piper-joe"))
    ws_url = base.replace("http://", "ws://")
    paths = {"in-process (baseline)": lambda t: in_process(backend, t),
             "WS /ws/tts": lambda t: asyncio.run(ws_tts(ws_url, {"target_text": t})),
             "POST /v1/audio/speech (pcm, streamed)": lambda t: http_tts(base, t)}
    rows, base_ttfb = [], {}
    for run in paths.values():
        run(SENTENCES[1])                  # warm-up: the first ONNX run and the first connection are slow
    for label, text in TEXTS.items():
        for path, run in paths.items():
            runs = [run(text) for _ in range(repeats)]
            ttfb, total = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            audio_s = len(runs[0][2]) / 2 / RATE
            base_ttfb.setdefault(label, ttfb)
            rows.append([label, path, round(ttfb * 1000), round(total, 2), round(audio_s, 1), total / audio_s,
                         ttfb / total, f"x{ttfb / base_ttfb[label]:.2f}"])
    return rows


def round_trip_rows(base: str) -> list[list]:
    ws_url = base.replace("http://", "ws://")
    speakers = httpx.get(f"{base}/api/speakers").json()["speakers"]
    rows = []
    for s in speakers:
        lang = s["language"]
        if lang not in ROUND_TRIP:
            continue
        _, _, pcm = asyncio.run(ws_tts(ws_url, {"target_text": ROUND_TRIP[lang], "speaker_id": s["id"]}))
        audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
        r = httpx.post(f"{base}/v1/speech/transcribe", timeout=300, data={"language": lang},
                       files={"audio": ("tts.wav", wav_bytes(audio, RATE))})
        hyp = r.json()["text"]
        metric = "CER" if lang in BY_CHARACTER else "WER"
        rows.append([s["name"], lang, metric, error_rate(ROUND_TRIP[lang], hyp, lang in BY_CHARACTER), hyp[:60]])
    return rows


def concurrency_rows(base: str, clients: int) -> list[list]:
    ws_url = base.replace("http://", "ws://")
    request = {"target_text": TEXTS["10 sentences"]}

    async def many(n: int) -> list[tuple[float, float, bytes]]:
        return await asyncio.gather(*(ws_tts(ws_url, request) for _ in range(n)))
    single = asyncio.run(many(1))[0]
    runs = asyncio.run(many(clients))
    ttfbs = [r[0] for r in runs]
    audio_s = sum(len(r[2]) for r in runs) / 2 / RATE
    wall = max(r[1] for r in runs)
    return [[1, round(single[0] * 1000), round(single[0] * 1000), round(single[1], 2), "x1.00", single[1] / (len(single[2]) / 2 / RATE)],
            [clients, round(percentile(ttfbs, 50) * 1000), round(percentile(ttfbs, 95) * 1000), round(wall, 2),
             f"x{percentile(ttfbs, 50) / single[0]:.2f}", wall / audio_s]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))
    base = f"http://127.0.0.1:{port}"
    try:
        launch.wait_ready(base, 600)
        table("Time to first audio byte and RTF (Piper joe, 24 kHz PCM)",
              ["text", "path", "TTFB ms", "total s", "audio s", "RTF", "TTFB/total", "TTFB vs in-process"],
              latency_rows(base, args.repeats))
        table("ASR round trip per voice (Whisper base, language given)",
              ["voice", "language", "metric", "error rate", "heard"], round_trip_rows(base))
        table(f"{args.clients} concurrent /ws/tts clients x 10 sentences",
              ["clients", "TTFB p50 ms", "TTFB p95 ms", "wall s", "p50 vs 1 client", "aggregate RTF"],
              concurrency_rows(base, args.clients))
    finally:
        launch.stop()


if __name__ == "__main__":
    main()
