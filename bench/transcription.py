"""File transcription through the running server, against baselines measured in the same run.

1. Serving overhead: the same audio through POST /v1/speech/transcribe vs the
   same pipeline called in-process (decode -> Silero VAD -> faster-whisper
   batched, same model, compute type and threads).
2. Throughput: 8 concurrent 30 s uploads vs the same 8 sent one after another.
3. WER per CPU model on the LibriVox and cards clips and the two-speaker call.
Run: .venv/bin/python bench/transcription.py  (starts its own app; ~6 min on 2 cores)
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, table  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.audio import decode_audio  # noqa: E402
from speechcore.textmetrics import wer  # noqa: E402
from tests.speech import CALL, call_transcript, cards, librivox  # noqa: E402

REPEATS = 3


def in_process(model_dir: str, threads: int):
    from speechcore.backends.silero_vad import SileroVAD
    from speechcore.backends.whisper_asr import FasterWhisperASR
    from speechcore.schemas import TranscribeOptions
    from speechcore.spec import BackendSpec
    from speechcore.pipelines.transcription import (asr_requests, decode_options, merge_transcripts, plan_limits,
                                                    plan_transcription)
    from speechcore.vad import speech_regions

    vad = SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad"))
    asr = FasterWhisperASR(BackendSpec(backend="faster-whisper", model=model_dir,
                                       options={"compute_type": "int8", "cpu_threads": threads}))

    def run(data: bytes) -> str:
        audio = decode_audio(data)
        options = TranscribeOptions(language="en")
        plan = plan_transcription(speech_regions(vad.frame_probs(audio), len(audio) / 16000),
                                  plan_limits(asr.info().extra))
        parts = asr.transcribe_batch(asr_requests(audio, plan, decode_options(plan, options)))   # the server's plan
        return merge_transcripts(plan, parts, len(audio) / 16000, options).text
    return run


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def post(url: str, data: bytes, model: str, name: str = "a.wav") -> str:
    r = httpx.post(f"{url}/v1/speech/transcribe", files={"audio": (name, data)},
                   data={"language": "en", "model": model}, timeout=600)
    r.raise_for_status()
    return r.json()["text"]


def overhead(url: str) -> None:
    rows = []
    samples = {"LibriVox clip (7.1 s)": next(iter(librivox())).read_bytes(), "two-speaker call (30 s)": CALL.read_bytes()}
    for model in ("whisper-base", "whisper-tiny.en"):
        local = in_process(model, 2)
        for label, data in samples.items():
            duration = len(decode_audio(data)) / 16000
            post(url, data, model), local(data)   # warm both
            server = statistics.median(timed(post, url, data, model)[0] for _ in range(REPEATS))
            inproc = statistics.median(timed(local, data)[0] for _ in range(REPEATS))
            rows.append([model, label, round(inproc / duration, 3), round(server / duration, 3),
                         round(server / inproc, 2)])
    table("Serving overhead: RTF through the server vs in-process faster-whisper (median of 3)",
          ["model", "audio", "RTF in-process", "RTF via server", "overhead ratio"], rows)


def throughput(url: str) -> None:
    data = CALL.read_bytes()
    rows = []
    for model in ("whisper-tiny.en", "whisper-base"):
        post(url, data, model)
        seq, _ = timed(lambda: [post(url, data, model) for _ in range(8)])

        async def burst():
            async with httpx.AsyncClient(timeout=900) as client:
                rs = await asyncio.gather(*[client.post(f"{url}/v1/speech/transcribe", files={"audio": ("c.wav", data)},
                                                        data={"language": "en", "model": model}) for _ in range(8)])
                assert all(r.status_code == 200 for r in rs)

        conc, _ = timed(lambda: asyncio.run(burst()))
        rows.append([model, round(seq, 1), round(conc, 1), round(240 / seq, 2), round(240 / conc, 2),
                     round(seq / conc, 2)])
    table("Throughput: 8 x 30 s uploads, sequential vs concurrent (batched in the ASR deployment)",
          ["model", "sequential (s)", "concurrent (s)", "audio-s/s seq", "audio-s/s conc", "speed-up"], rows)


def accuracy(url: str) -> None:
    rows = []
    sets = {"LibriVox (5 clips, 1 reader)": librivox(), "cards (5 clips)": cards(),
            "two-speaker call (30 s)": {CALL: call_transcript()}}
    for model in ("whisper-base", "whisper-tiny.en"):
        for label, clips in sets.items():
            errors = [wer(ref, post(url, p.read_bytes(), model)) * len(ref.split()) for p, ref in clips.items()]
            words = sum(len(ref.split()) for ref in clips.values())
            rows.append([model, label, words, f"{100 * sum(errors) / words:.1f} %"])
    table("WER through the server (normalised: lower case, no punctuation)", ["model", "set", "words", "WER"], rows)


def main() -> None:
    port = free_port()
    launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))
    url = f"http://127.0.0.1:{port}"
    launch.wait_ready(url, 600)
    try:
        overhead(url)
        throughput(url)
        accuracy(url)
    finally:
        launch.stop()


if __name__ == "__main__":
    main()
