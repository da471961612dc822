"""Chat completions: tokens/s and time to first token at 1 and 4 concurrent requests (issue 13).

Rows, all in one run on the same machine:
- in-process llama.cpp backend, the baseline: one context with 2 threads (requests take turns),
  then two contexts with 1 thread each and with 2 threads each (two requests generate at once),
  and two contexts that generate on 1 thread and read a prompt on 2 while the other context is idle
  (`threads_batch`, the profile's);
- `POST /v1/chat/completions` streamed through Ray Serve with the CPU profile's LLM settings.
Each request asks for `--tokens` tokens at temperature 0 with no stop, so every row generates
the same amount of text. Tokens/s is all tokens generated over the wall time of the round.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/chat.py [--tokens 96] [--rounds 3]`
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, percentile, table  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.backends.llama_cpp_llm import LlamaCppLLM  # noqa: E402
from speechcore.schemas import ChatMessage, GenerationParams  # noqa: E402
from speechcore.spec import BackendSpec  # noqa: E402

QUESTIONS = ["Tell me a story about a lighthouse keeper.", "Describe a walk through a forest in autumn.",
             "Explain how bread is made.", "Write a letter to a friend about a holiday by the sea."]


def in_process(contexts: int, threads: int, threads_batch: int, concurrency: int,
               tokens: int) -> tuple[float, list[float]]:
    """(tokens/s, first-token seconds) for one round of `concurrency` requests on threads."""
    backend = LlamaCppLLM(BackendSpec(backend="llama-cpp", model="smollm2-135m", device="cpu",
                                      options={"contexts": contexts, "threads": threads,
                                               "threads_batch": threads_batch}))
    params = GenerationParams(max_tokens=tokens, temperature=0.0, stop=[])
    firsts, counts = [], []

    def ask(q: str) -> None:
        start, first, n = time.perf_counter(), None, 0
        for piece in backend.generate([ChatMessage("user", q)], params):
            first = first or time.perf_counter() - start
            n = piece.completion_tokens or n
        firsts.append(first or 0.0)
        counts.append(n)

    started = time.perf_counter()
    workers = [threading.Thread(target=ask, args=(QUESTIONS[i % 4],)) for i in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - started), firsts


async def over_http(base_url: str, model: str, concurrency: int, tokens: int) -> tuple[float, list[float]]:
    async with httpx.AsyncClient(timeout=300) as client:
        async def ask(q: str) -> tuple[float, int]:
            start, first, usage = time.perf_counter(), None, 0
            body = {"model": model, "messages": [{"role": "user", "content": q}], "max_tokens": tokens,
                    "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
            async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if '"content": "' in line and '"content": ""' not in line:
                        first = first or time.perf_counter() - start
                    if '"usage": {' in line:
                        usage = int(line.split('"completion_tokens": ')[1].split(",")[0])
            return first or 0.0, usage

        started = time.perf_counter()
        results = await asyncio.gather(*[ask(QUESTIONS[i % 4]) for i in range(concurrency)])
        return sum(n for _, n in results) / (time.perf_counter() - started), [f for f, _ in results]


def row(name: str, concurrency: int, rounds: list[tuple[float, list[float]]]) -> list:
    firsts = [f for _, fs in rounds for f in fs]
    return [name, concurrency, sum(r for r, _ in rounds) / len(rounds), percentile(firsts, 50) * 1000,
            percentile(firsts, 95) * 1000]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for contexts, threads, batch in ((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 1, 2)):
        for concurrency in (1, 4):
            rounds = [in_process(contexts, threads, batch, concurrency, args.tokens) for _ in range(args.rounds)]
            prompts = f", a prompt on {batch} when alone" if batch != threads else ""
            rows.append(row(f"in-process, {contexts} context(s) x {threads} thread(s){prompts}", concurrency,
                            rounds))
    port = free_port()
    config = launch.load_config("configs/serve_cpu.yaml", port=port)
    launch.start(config)
    try:
        launch.deploy(config)
        base_url = f"http://127.0.0.1:{port}"
        launch.wait_ready(base_url)
        model = next(m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"] if "smollm" in m["id"])
        for concurrency in (1, 4):
            rounds = [asyncio.run(over_http(base_url, model, concurrency, args.tokens)) for _ in range(args.rounds)]
            rows.append(row("/v1/chat/completions (profile)", concurrency, rounds))
    finally:
        launch.stop()
    base = {c: r[2] for r in rows[:2] for c in [r[1]]}
    table(f"Chat completions, SmolLM2-135M Q4 on llama.cpp, {args.tokens} tokens per request",
          ["path", "concurrent", "tokens/s", "first token p50 ms", "first token p95 ms", "x baseline"],
          [[*r, r[2] / base[r[1]]] for r in rows])


if __name__ == "__main__":
    main()
