"""Autoscaling shown: the CPU profile with Serve autoscaling turned on for the `tts` deployment
(1-3 replicas, target 1 ongoing request, short delays), driven by the open-loop load generator, then
left idle; prints the replica count over time (from Serve's status) beside the offered load.
Run: `PYTHONPATH=. .venv/bin/python bench/autoscale.py` (about 3 minutes).
"""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, table  # noqa: E402
from clients import calls  # noqa: E402
from graphs import launch  # noqa: E402
from loadtest.http_load import run_rate  # noqa: E402

AUTOSCALING = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1, "upscale_delay_s": 3,
               "downscale_delay_s": 15, "metrics_interval_s": 1, "look_back_period_s": 4}
PHASES = [("idle", 0.0, 10), ("load", 4.0, 50), ("idle", 0.0, 60)]   # (name, req/s, seconds)


def profile(port: int) -> dict:
    config = launch.load_config("configs/serve_cpu.yaml", port=port)
    for d in config["applications"][0]["deployments"]:
        if d["name"] == "tts":
            d["autoscaling_config"] = AUTOSCALING
            d["max_ongoing_requests"] = 4
    return config


def replicas() -> int:
    from ray import serve

    status = serve.status().applications["speech"].deployments["tts"]
    return int((status.replica_states or {}).get("RUNNING", 0))


def main() -> None:
    port = free_port()
    launch.start(profile(port))
    url = f"http://127.0.0.1:{port}"
    launch.wait_ready(url, 600)
    timeline: list[tuple[float, str, float, int]] = []
    phase = ["", 0.0]
    t0 = time.perf_counter()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            timeline.append((time.perf_counter() - t0, str(phase[0]), float(phase[1]), replicas()))
            stop.wait(5)
    watcher = threading.Thread(target=watch, daemon=True)
    try:
        watcher.start()
        for name, rate, seconds in PHASES:
            phase[:] = [name, rate]
            if rate:
                samples, _ = asyncio.run(run_rate(url, lambda i: calls.speech(f"Autoscaling check number {i}."),
                                                  rate, seconds))
                print(f"load phase: {samples.summary('ok')}, errors {dict(samples.errors)}", flush=True)
            else:
                time.sleep(seconds)
        stop.set()
        watcher.join()
    finally:
        launch.stop()
    table("tts replicas over time (Serve autoscaling 1-3, target 1 ongoing request)",
          ["t (s)", "phase", "offered load (req/s)", "replicas"],
          [[round(t), name, rate, n] for t, name, rate, n in timeline])


if __name__ == "__main__":
    main()
