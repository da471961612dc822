"""Live transcription benchmarks: end-of-turn latency and concurrent real-time streams.

    python bench/live_transcription.py latency      # p50/p95 final latency per model, vs offline
    python bench/live_transcription.py concurrency  # streams one machine sustains (p95 final <= 1 s)
    (--models moonshine-base,whisper-tiny.en picks the models; default: all three)
    python bench/live_transcription.py policy       # ASR calls per turn by speculation delay (no Ray)

Starts configs/serve_cpu.yaml on a private Ray instance (graphs/launch.py), streams
LibriVox clips separated by 1.2 s pauses over /ws/transcribe/vad in 100 ms chunks at
real time, and measures, per final, the time from sending the last chunk that holds
speech (Silero offline, p >= 0.5) to the final's arrival. The offline reference is
the same clips transcribed whole through the ASR deployment (its text and decode time).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live_client import SR, chunks, final_latencies, stream_platform  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.audio import decode_audio  # noqa: E402
from speechcore.backends.silero_vad import SileroVAD  # noqa: E402
from speechcore.schemas import ASRRequest, TranscribeOptions  # noqa: E402
from speechcore.spec import BackendSpec  # noqa: E402
from speechcore.textmetrics import wer  # noqa: E402
from tests.conftest import CPU_CONFIG, free_port  # noqa: E402
from tests.speech import CALL, librivox  # noqa: E402

MODELS = {"moonshine-base": "asr_moonshine_base", "whisper-tiny.en": "asr_whisper_tiny_en",
          "whisper-base": "asr_whisper_base"}
PAUSE_S = 1.2


def session_audio(clips: list[np.ndarray]) -> np.ndarray:
    gap = np.zeros(int(PAUSE_S * SR), np.float32)
    return np.concatenate([gap[: SR // 2]] + [x for c in clips for x in (c, gap)])


def turn_end_chunks(clips: list[np.ndarray]) -> list[int]:
    """For each clip of `session_audio(clips)`: the index of the last 100 ms chunk holding its speech
    (Silero offline, last 32 ms frame with p >= 0.5)."""
    vad = SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad"))
    out, offset = [], SR // 2
    for c in clips:
        last_frame = int(np.nonzero(vad.frame_probs(c) >= 0.5)[0][-1])
        out.append((offset + (last_frame + 1) * 512 - 1) // 1600)
        offset += len(c) + int(PAUSE_S * SR)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def offline(model: str, clips: list[np.ndarray]) -> tuple[list[str], list[float]]:
    from ray import serve

    handle = serve.get_deployment_handle(MODELS[model], app_name="speech")
    texts, times = [], []
    for c in clips:
        t = time.perf_counter()
        r = await handle.transcribe.remote(ASRRequest(c, [(0.0, len(c) / SR)], TranscribeOptions(language="en")))
        times.append(time.perf_counter() - t)
        texts.append(r.text)
    return texts, times


async def latency(ws: str, clips, refs, rounds: int) -> None:
    audio = session_audio(clips)
    voiced = turn_end_chunks(clips)
    print(f"\n{len(clips)} LibriVox clips ({sum(len(c) for c in clips) / SR:.1f} s of speech) per session, "
          f"{PAUSE_S} s pauses, 100 ms chunks at real time, silence_ms 300, {rounds} round(s)\n")
    print("| model | mode | finals | final latency p50 (ms) | p95 (ms) | WER stream | WER offline "
          "| offline decode p50 (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        await stream_platform(ws, audio[: 3 * SR], speed=0, query=f"model={model}")   # warm up
        off_text, off_time = await offline(model, clips)
        for mode, query in [("speculative (default)", ""), ("decode after silence", "&speculate_ms=5000")]:
            lat, texts = [], []
            for _ in range(rounds):
                run = await stream_platform(ws, audio, speed=1.0, query=f"model={model}&language=en{query}")
                lat += final_latencies(run, voiced)
                texts = [f["text"] for f in run.finals()]
            print(f"| {model} | {mode} | {len(texts)}/{len(clips)} | {pct(lat, 50):.0f} | {pct(lat, 95):.0f} "
                  f"| {wer(' '.join(refs), ' '.join(texts)):.3f} | {wer(' '.join(refs), ' '.join(off_text)):.3f} "
                  f"| {pct(off_time, 50):.0f} |")


async def concurrency(ws: str, clips, levels: list[int]) -> None:
    audio = session_audio(clips)
    voiced = turn_end_chunks(clips)
    print(f"\nN concurrent sessions, each streaming {len(audio) / SR:.1f} s ({len(clips)} turns) at real time; "
          "starts staggered over 1 s\n")
    print("| model | streams | finals | final latency p50 (ms) | p95 (ms) | partials per turn | sustained |")
    print("|---|---|---|---|---|---|---|")
    for model in MODELS:
        await stream_platform(ws, audio[: 3 * SR], speed=0, query=f"model={model}")   # warm up
        for n in levels:
            async def one(i: int):
                await asyncio.sleep(random.random())
                return await stream_platform(ws, audio, speed=1.0, query=f"model={model}&language=en")

            runs = await asyncio.gather(*[one(i) for i in range(n)])
            lat = [x for r in runs for x in final_latencies(r, voiced)]
            finals = sum(len(r.finals()) for r in runs)
            partials = sum(len(r.of(final=False)) for r in runs)
            ok = pct(lat, 95) <= 1000 and finals == n * len(clips)
            print(f"| {model} | {n} | {finals}/{n * len(clips)} | {pct(lat, 50):.0f} | {pct(lat, 95):.0f} "
                  f"| {partials / max(finals, 1):.1f} | {'yes' if ok else 'no'} |", flush=True)
            if not pct(lat, 95) <= 5000:   # far past the knee: stop this model
                break


def policy(librivox_audio: np.ndarray, call_audio: np.ndarray) -> None:
    """Replay recordings through the session engine with the real Silero VAD and an instant ASR
    that counts calls: what speculation costs in wasted decodes and gains in head start."""
    from speechcore.schemas import Transcript
    from speechcore.sessions.events import Transcription
    from speechcore.sessions.live import LiveSession
    from speechcore.sessions.transcriber import StreamOptions

    vad = SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad"))

    async def replay(audio: np.ndarray, speculate_ms: int) -> tuple[int, int, int]:
        calls, events = [], []

        async def vad_stream(audio, state):
            return vad.stream_probs(audio, state)

        async def asr(x, options):
            calls.append(options.beam_size)
            await asyncio.sleep(0.005)
            return Transcript(text="x", language="en", language_probability=1.0, duration=0.0, segments=[])

        async def emit(e):
            if isinstance(e, Transcription):
                events.append(e)

        session = LiveSession(StreamOptions(speculate_ms=speculate_ms), vad_stream, asr, emit)
        for c in chunks(audio):
            await session.feed(c)
            await asyncio.sleep(0.001)
        await session.finish()
        finals = sum(1 for e in events if e.is_final)
        return len(calls), finals, len(events) - finals

    print("\n| recording | speculate_ms | head start on the final (ms) | finals | partials | ASR calls "
          "| wasted guesses |")
    print("|---|---|---|---|---|---|---|")
    for name, audio in [("5 LibriVox clips", librivox_audio), ("two-speaker call", call_audio)]:
        baseline = None
        for ms in (5000, 0, 96, 160, 224):
            n, finals, partials = asyncio.run(replay(audio, ms))
            baseline = n if baseline is None else baseline
            label = "off" if ms == 5000 else ms
            head = 0 if ms == 5000 else 300 - ms
            print(f"| {name} | {label} | {head} | {finals} | {partials} | {n} | {n - baseline} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["latency", "concurrency", "policy"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--levels", default="1,2,4,6,8,12,16")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    for name in set(MODELS) - set(args.models.split(",")):
        del MODELS[name]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    items = sorted(librivox().items())
    clips = [decode_audio(p.read_bytes()) for p, _ in items]
    refs = [r for _, r in items]
    if args.what == "policy":
        return policy(session_audio(clips), decode_audio(CALL.read_bytes()))
    config = launch.load_config(CPU_CONFIG, port=free_port())
    launch.start(config)
    url = f"http://127.0.0.1:{config['http_options']['port']}"
    try:
        launch.wait_ready(url, timeout_s=420)
        print(f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
        ws = url.replace("http://", "ws://")
        if args.what == "latency":
            asyncio.run(latency(ws, clips, refs, args.rounds))
        else:
            asyncio.run(concurrency(ws, clips[1:4], [int(x) for x in args.levels.split(",")]))
    finally:
        launch.stop()


if __name__ == "__main__":
    main()
