"""Admission control under load (issue 8, item 6): latency of admitted uploads and the refusal rate
at 1x and 2x the sustainable load, on the CPU profile.

1. Sustainable rate, measured in the same run: `--clients` closed-loop clients post a ~10 s clip of
   real speech (LibriVox, joined) to `POST /v1/audio/transcriptions` for `--closed-s` seconds; the
   completed requests per second is the rate the server sustains.
2. Open loop: arrivals at 1x and 2x that rate (Poisson, or fixed intervals) for `--open-s` seconds
   each, every arrival posted whatever the server is doing; the row ends when every answer is in.
   Admitted = 200, refused = 429 with Retry-After, error = anything else.
3. When 2x refuses nothing under the profile's bulk bound, 2x again with the bound lowered to
   `--low-bound` through the ASR deployment's `user_config` (no restart, as tests/test_admission.py);
   `--lowered yes` runs that row anyway. The profile's bound is put back afterwards.

Run: `PYTHONPATH=$PWD .venv/bin/python bench/admission.py [--open-s 75] [--lowered auto|yes|no]`
(starts its own app on a private Ray instance; about 7 minutes on 2 cores with the defaults).
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, percentile, table  # noqa: E402
from bench.hardening import long_clip  # noqa: E402
from graphs import launch  # noqa: E402
from tests.test_admission import DEPLOYMENT, MODEL, apply, asr_deployment, with_bulk_bound  # noqa: E402

PATH = "/v1/audio/transcriptions"


@dataclass
class Outcome:
    """Answers of one load phase."""
    started: float = field(default_factory=time.perf_counter)
    sent: int = 0
    latencies: list[float] = field(default_factory=list)     # admitted (200) requests, seconds
    finished: list[float] = field(default_factory=list)      # when each admitted request completed
    retry_after: list[int] = field(default_factory=list)     # refused (429 + Retry-After)
    errors: dict[str, int] = field(default_factory=dict)

    def completed_per_s(self) -> float:
        return len(self.finished) / (max(self.finished) - self.started) if self.finished else 0.0


async def post(client: httpx.AsyncClient, clip: bytes, out: Outcome) -> int:
    """Posts `clip` once and files the answer in `out`; the Retry-After seconds when refused, else 0."""
    out.sent += 1
    t0 = time.perf_counter()
    try:
        r = await client.post(PATH, files={"file": ("clip.wav", clip)}, data={"model": MODEL})
    except httpx.HTTPError as exc:
        out.errors[type(exc).__name__] = out.errors.get(type(exc).__name__, 0) + 1
        return 0
    if r.status_code == 200 and r.json().get("text", "").strip():
        out.latencies.append(time.perf_counter() - t0)
        out.finished.append(time.perf_counter())
    elif r.status_code == 429 and r.headers.get("retry-after", "").isdigit():
        out.retry_after.append(int(r.headers["retry-after"]))
        return out.retry_after[-1]
    else:
        key = f"{r.status_code} {r.text[:60]}"
        out.errors[key] = out.errors.get(key, 0) + 1
    return 0


def client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=900, limits=httpx.Limits(max_connections=None))


async def closed_loop(base: str, clip: bytes, clients: int, seconds: float) -> Outcome:
    """`clients` clients, each posting again as soon as its answer is in, for `seconds`."""
    async with client(base) as c:
        await asyncio.gather(*(post(c, clip, Outcome()) for _ in range(clients)))   # warm up, not counted
        out = Outcome()
        stop = out.started + seconds

        async def one() -> None:
            while time.perf_counter() < stop:
                await asyncio.sleep(await post(c, clip, out))   # a refused client waits as told

        await asyncio.gather(*(one() for _ in range(clients)))
    return out


async def open_loop(base: str, clip: bytes, rate: float, seconds: float, poisson: bool, seed: int) -> Outcome:
    """Arrivals at `rate` per second for `seconds`, each sent whatever is still in flight."""
    rng = random.Random(seed)
    async with client(base) as c:
        out = Outcome()
        tasks, t = [], 0.0
        while t < seconds:
            await asyncio.sleep(max(0.0, out.started + t - time.perf_counter()))
            tasks.append(asyncio.create_task(post(c, clip, out)))
            t += rng.expovariate(rate) if poisson else 1.0 / rate
        await asyncio.gather(*tasks)
    return out


def row(label: str, bound: str, offered: float | None, seconds: float, out: Outcome) -> list:
    lat = out.latencies
    if out.errors:
        print(f"{label}, bound {bound}: errors {out.errors}", flush=True)
    latency = [f"{v:.1f}" for v in (percentile(lat, 50), percentile(lat, 95), max(lat))] if lat else ["-"] * 3
    return [label, bound, "-" if offered is None else f"{offered:.2f}", out.sent, f"{out.sent / seconds:.2f}",
            f"{out.completed_per_s():.2f}", *latency, f"{100 * len(out.retry_after) / max(out.sent, 1):.0f} %",
            f"{statistics.mean(out.retry_after):.1f}" if out.retry_after else "-", sum(out.errors.values())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip-s", type=float, default=10.0, help="seconds of speech per request")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients (below the bulk bound)")
    parser.add_argument("--closed-s", type=float, default=60.0, help="closed-loop duration")
    parser.add_argument("--open-s", type=float, default=75.0, help="duration of each open-loop row")
    parser.add_argument("--multiples", type=float, nargs="+", default=[1.0, 2.0], help="of the sustainable rate")
    parser.add_argument("--arrivals", choices=["poisson", "fixed"], default="poisson")
    parser.add_argument("--rate", type=float, help="sustainable rate to use (req/s) instead of measuring it")
    parser.add_argument("--low-bound", type=int, default=4, help="bulk bound (requests) of the lowered row")
    parser.add_argument("--lowered", choices=["auto", "yes", "no"], default="auto",
                        help="2x with the lowered bound: auto = only when 2x refused nothing")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    clip = long_clip(args.clip_s)
    port = free_port()
    config = launch.load_config("configs/serve_cpu.yaml", port=port)
    bound = asr_deployment(config)["user_config"]["max_requests"]["bulk"]
    launch.start(config)
    base = f"http://127.0.0.1:{port}"
    launch.wait_ready(base, 600)
    try:
        from ray import serve

        def handles(name: str):
            return serve.get_deployment_handle(name, app_name="speech")

        closed = asyncio.run(closed_loop(base, clip, args.clients, args.closed_s))
        rate = args.rate or closed.completed_per_s()
        rows = [row(f"closed loop, {args.clients} clients", f"{bound} (profile)", None, args.closed_s, closed)]
        poisson, refused_at_top = args.arrivals == "poisson", False
        top = max(args.multiples)
        for i, k in enumerate(args.multiples):
            out = asyncio.run(open_loop(base, clip, k * rate, args.open_s, poisson, args.seed + i))
            rows.append(row(f"open loop {k:g}x", f"{bound} (profile)", k * rate, args.open_s, out))
            refused_at_top |= k == top and bool(out.retry_after)
        if args.lowered == "yes" or (args.lowered == "auto" and not refused_at_top):
            apply(with_bulk_bound(config, args.low_bound), handles, args.low_bound)
            try:
                out = asyncio.run(open_loop(base, clip, top * rate, args.open_s, poisson, args.seed + 99))
                rows.append(row(f"open loop {top:g}x", f"{args.low_bound} (lowered)", top * rate, args.open_s, out))
            finally:
                apply(config, handles, bound)
        table(f"Admission: POST {PATH} ({MODEL}, {args.clip_s:g} s LibriVox clip), sustainable rate "
              f"{rate:.2f} req/s ({rate * args.clip_s:.1f} audio-s/s), {args.arrivals} arrivals, "
              f"{args.open_s:g} s per open-loop row",
              ["load", "bulk bound (requests)", "offered req/s", "sent", "sent req/s", "completed req/s",
               "p50 s (200)", "p95 s (200)", "max s (200)", "refused (429)", "mean Retry-After s", "errors"], rows)
    finally:
        launch.stop()


if __name__ == "__main__":
    main()
