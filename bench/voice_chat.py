"""Voice chat: voice-to-voice latency at 1 and 4 conversations, and barge-in (issue 13).

All rows in one run of the CPU profile:
- baseline: the same work done one step after another with the plain endpoints
  (transcribe the question's audio, stream a chat completion until the first
  clause is complete, synthesize that clause over /ws/tts until the first audio);
- `/ws/voice-chat`: the recorded question sent in real time (100 ms chunks) and
  then silence; voice-to-voice = the last chunk with speech sent -> the first
  agent audio byte received (so it includes the `silence_ms` that ends the turn).
  Its parts come from the server's `latency` events (asr: turn end -> final,
  llm: request -> first token, tts_first: first clause -> its audio, total:
  turn end -> first audio sent).
- barge-in: while the agent speaks a long answer (real-time pacing), the
  question is spoken over it; onset (first speech chunk sent) -> the last agent
  audio frame received, and onset -> `interrupted`.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/voice_chat.py [--rounds 3] [--temperature 0.0]`
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, percentile, table  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.audio import SAMPLE_RATE, decode_audio, wav_bytes  # noqa: E402
from speechcore.sessions.conversation import next_clause  # noqa: E402
from tests.test_voice_chat import FAST, QUESTION, audio_message  # noqa: E402

CONFIG = {**FAST, "silence_ms": 300, "temperature": 0.0}   # --temperature; 0: the same answer every round
STEPS = ("asr", "llm", "tts_first", "total")


async def one_turn(ws_url: str, question: np.ndarray, rounds: int) -> list[dict]:
    """`rounds` turns on one conversation: voice-to-voice seconds and the server's latency parts (ms)."""
    out = []
    async with websockets.connect(f"{ws_url}/ws/voice-chat", max_size=None) as ws:
        await ws.send(json.dumps(CONFIG))
        await ws.recv()
        step = SAMPLE_RATE // 10
        audio = np.concatenate([question, np.zeros(SAMPLE_RATE * 2, np.float32)])
        for _ in range(rounds):
            parts: dict = {}
            reader = asyncio.ensure_future(_first_audio(ws, parts))
            spoken_end = 0.0
            for i in range(0, audio.size, step):
                await ws.send(audio_message(audio[i:i + step]))
                if i < question.size:
                    spoken_end = time.perf_counter()
                await asyncio.sleep(0.1)
                if reader.done():
                    break
            first = await reader
            out.append({"v2v": first - spoken_end, **parts})
            await _drain(ws)
    return out


async def _first_audio(ws, parts: dict) -> float:
    """Time of the first binary frame; latency events seen until the agent's end go into `parts`."""
    first, ended = None, False
    while first is None or not ended:        # the text may end before the first audio, or after it
        msg = await ws.recv()
        if isinstance(msg, bytes):
            first = first or time.perf_counter()
            continue
        data = json.loads(msg)
        if data.get("type") == "latency":
            parts.setdefault(data["step"], float(data["value"].removesuffix("ms")))
        ended = ended or data.get("type") == "agent_end"
    return first


async def _drain(ws, quiet_s: float = 1.5) -> None:
    while True:
        try:
            await asyncio.wait_for(ws.recv(), quiet_s)
        except asyncio.TimeoutError:
            return


async def barge_in(ws_url: str, question: np.ndarray) -> tuple[float, float] | None:
    """(onset -> last agent frame, onset -> interrupted) seconds, or None if the answer ended first."""
    config = {**FAST, "max_tokens": 200, "playback_lead_ms": 400,
              "system_prompt": "You are a storyteller. Tell long stories."}
    async with websockets.connect(f"{ws_url}/ws/voice-chat", max_size=None) as ws:
        await ws.send(json.dumps(config))
        await ws.recv()
        await ws.send(json.dumps({"type": "text_input", "text": "Tell me a long story about a lighthouse."}))
        last_frame, state = [0.0], {"interrupted": 0.0, "ended": False}

        async def read():
            while not state["interrupted"]:
                msg = await ws.recv()
                if isinstance(msg, bytes):
                    last_frame[0] = time.perf_counter()
                elif json.loads(msg).get("type") == "interrupted":
                    state["interrupted"] = time.perf_counter()
                elif json.loads(msg).get("type") == "agent_end":
                    state["ended"] = True
        reader = asyncio.ensure_future(read())
        while not last_frame[0]:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)
        onset = time.perf_counter()
        for i in range(0, question.size, SAMPLE_RATE // 10):
            await ws.send(audio_message(question[i:i + SAMPLE_RATE // 10]))
            await asyncio.sleep(0.1)
            if reader.done():
                break
        try:
            await asyncio.wait_for(reader, 10)
        except asyncio.TimeoutError:
            return None
        return last_frame[0] - onset, state["interrupted"] - onset


async def baseline(base_url: str, ws_url: str, question: np.ndarray, model: str) -> float:
    """The steps one after another: transcribe, first clause of the answer, its first audio."""
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        r = await client.post(f"{base_url}/v1/speech/transcribe", data={"language": "en"},
                              files={"audio": ("q.wav", wav_bytes(question, SAMPLE_RATE))})
        text, buffer, clause = r.json()["text"], "", None
        body = {"model": model, "stream": True, "max_tokens": 30, "temperature": CONFIG["temperature"],
                "messages": [{"role": "system", "content": CONFIG["system_prompt"]}, {"role": "user", "content": text}]}
        async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: {"):
                    buffer += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                    clause, rest = next_clause(buffer, first=True)
                    if clause:
                        break
    async with websockets.connect(f"{ws_url}/ws/tts", max_size=None) as ws:
        await ws.send(json.dumps({"target_text": clause or buffer, "language": "en"}))
        while not isinstance(await ws.recv(), bytes):
            pass
        first = time.perf_counter()
        await _drain(ws, 0.5)
    return first - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="the LLM's (0: one answer every round, so runs compare; the voice chat's default is 0.7)")
    args = ap.parse_args()
    CONFIG["temperature"] = args.temperature
    question = decode_audio(QUESTION.open("rb"), SAMPLE_RATE, 60)
    port = free_port()
    config = launch.load_config("configs/serve_cpu.yaml", port=port)
    launch.start(config)
    try:
        launch.deploy(config)
        base_url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        launch.wait_ready(base_url)
        model = next(m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"] if "smollm" in m["id"])
        asyncio.run(baseline(base_url, ws_url, question, model))                      # warm-up
        base = [asyncio.run(baseline(base_url, ws_url, question, model)) for _ in range(args.rounds)]
        rows = [["steps one after another (baseline)", 1, percentile(base, 50) * 1000, percentile(base, 95) * 1000,
                 "", "", "", "", 1.0]]
        for n in (1, 4):
            async def many() -> list[list[dict]]:
                return await asyncio.gather(*[one_turn(ws_url, question, args.rounds) for _ in range(n)])
            turns = [t for conv in asyncio.run(many()) for t in conv]
            v2v = [t["v2v"] for t in turns]
            parts = [percentile([t[s] for t in turns if s in t], 50) if any(s in t for t in turns) else ""
                     for s in STEPS]
            rows.append(["/ws/voice-chat", n, percentile(v2v, 50) * 1000, percentile(v2v, 95) * 1000, *parts,
                         percentile(v2v, 50) / percentile(base, 50)])
        table("Voice-to-voice latency (ms; parts are server-side p50), whisper-base + SmolLM2-135M + Piper, CPU",
              ["path", "conversations", "p50", "p95", "asr", "llm", "tts_first", "total (server)", "x baseline"],
              rows)
        cuts = [c for c in (asyncio.run(barge_in(ws_url, question)) for _ in range(args.rounds + 2)) if c]
        if cuts:
            table("Barge-in (ms): user speech onset -> ...",
                  ["samples", "last agent frame p50", "p95", "interrupted event p50", "p95"],
                  [[len(cuts), percentile([c[0] for c in cuts], 50) * 1000, percentile([c[0] for c in cuts], 95) * 1000,
                    percentile([c[1] for c in cuts], 50) * 1000, percentile([c[1] for c in cuts], 95) * 1000]])
    finally:
        launch.stop()


if __name__ == "__main__":
    main()
