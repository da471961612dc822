"""Load sweep on the CPU profile: each HTTP family at rising request rates (open loop), then live
transcription at rising numbers of real-time streams; prints tables, writes loadtest/results/ (JSON and
SVG plots). A level is sustained when p95 latency is under the family's target with 0 errors.
Run: `make loadtest` (starts configs/serve_cpu.yaml on a private Ray instance; about 7 minutes),
or against a running server: `python loadtest/run.py --url http://host:8000`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, table  # noqa: E402
from clients import calls  # noqa: E402
from clients.speech import SpeechClient  # noqa: E402
from loadtest.http_load import CallFactory, run_rate  # noqa: E402
from loadtest.plot import figure  # noqa: E402
from loadtest.ws_load import run_streams, script  # noqa: E402
from speechcore.audio import decode_audio  # noqa: E402
from tests.speech import librivox  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIPS = list(librivox())
SENTENCE = "Thank you for calling. Your appointment is confirmed for Tuesday at ten."


def families() -> dict[str, tuple[CallFactory, float, list[float], str]]:
    """family -> (request factory, p95 target s, rates to try, what one request is)."""
    clip, short = CLIPS[0].read_bytes(), CLIPS[1].read_bytes()
    return {
        "transcription": (lambda i: calls.transcribe(clip, model="whisper-1", language="en"), 3.0,
                          [0.2, 0.4, 0.6, 0.8], "7.1 s clip, POST /v1/audio/transcriptions (whisper-base)"),
        "tts": (lambda i: calls.speech(f"{SENTENCE} Reference {i}."), 1.5, [1, 2, 3, 4],
                "one 13-word sentence, POST /v1/speech/synthesize (Piper)"),
        "speaker verification": (lambda i: calls.verify("loadtest-reader", short), 1.0, [1, 2, 3, 4],
                                 "3 s clip, POST /verify (Resemblyzer)"),
        "chat": (lambda i: calls.chat([{"role": "user", "content": f"Give me one tip for a calm day ({i})."}],
                                      "smollm2-135m", max_tokens=32), 3.0, [1, 2, 3, 4],
                 "up to 32 tokens, POST /v1/chat/completions (SmolLM2-135M)"),
    }


def sweep_http(url: str, duration_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with SpeechClient(url) as c:
        c.enroll("loadtest-reader", CLIPS[2])
    for name, (make, target, rates, what) in families().items():
        rows = []
        for rate in rates:
            samples, wall = asyncio.run(run_rate(url, make, rate, duration_s))
            s = samples.summary("ok")
            errors = sum(samples.errors.values())
            ok = errors == 0 and s["p95"] <= target
            rows.append({"rate": rate, **s, "errors": errors, "error_kinds": dict(samples.errors),
                         "throughput": s["n"] / wall, "sustained": ok})
            if not ok and (errors or s["p95"] > 2 * target):
                break                           # past the knee: higher rates only queue more
        out[name] = {"target_s": target, "what": what, "levels": rows}
    return out


def sweep_ws(url: str, streams: list[int], model: str) -> dict[str, Any]:
    plan = script([decode_audio(p.read_bytes()) for p in CLIPS[:3]])
    rows = []
    for n in streams:
        samples = asyncio.run(run_streams(url.replace("http", "ws", 1), "platform", plan, n, query=f"model={model}"))
        f, p = samples.summary("final"), samples.summary("first_partial")
        errors = sum(samples.errors.values())
        rows.append({"streams": n, "finals": f["n"], "p50": f["p50"], "p95": f["p95"], "partial_p50": p["p50"],
                     "errors": errors, "error_kinds": dict(samples.errors), "sustained": errors == 0 and f["p95"] <= 1.5})
    return {"target_s": 1.5, "model": model, "levels": rows}


def report(http: dict[str, Any], ws: dict[str, Any]) -> None:
    rows = [[name, f"{lv['rate']:g}", lv["n"], round(lv["p50"], 2), round(lv["p95"], 2), lv["errors"],
             round(lv["throughput"], 2), "yes" if lv["sustained"] else "no"]
            for name, fam in http.items() for lv in fam["levels"]]
    table("HTTP families, open-loop rate sweep", ["family", "rate (req/s)", "answered", "p50 (s)", "p95 (s)",
                                                  "errors", "throughput (req/s)", "sustained"], rows)
    table(f"Live transcription (/ws/transcribe/vad, {ws['model']}), real-time streams",
          ["streams", "finals", "final p50 (s)", "final p95 (s)", "first partial p50 (s)", "errors", "sustained"],
          [[lv["streams"], lv["finals"], round(lv["p50"], 2), round(lv["p95"], 2), round(lv["partial_p50"], 2),
            lv["errors"], "yes" if lv["sustained"] else "no"] for lv in ws["levels"]])
    best = [[name, fam["what"], fam["target_s"], max((lv["rate"] for lv in fam["levels"] if lv["sustained"]),
                                                     default=0)] for name, fam in http.items()]
    best.append(["live transcription", f"real-time streams, 3 turns each ({ws['model']})", ws["target_s"],
                 max((lv["streams"] for lv in ws["levels"] if lv["sustained"]), default=0)])
    table("Highest sustained load (p95 under target, 0 errors)", ["family", "request", "p95 target (s)", "max"], best)


def plots(http: dict[str, Any], ws: dict[str, Any]) -> None:
    nan = float("nan")
    panels = [(name, "offered load (req/s)", [(lv["rate"], lv["p50"], lv["p95"] if lv["n"] else nan)
                                              for lv in fam["levels"]], fam["target_s"]) for name, fam in http.items()]
    panels.append(("live transcription (final)", "concurrent real-time streams",
                   [(lv["streams"], lv["p50"], lv["p95"]) for lv in ws["levels"]], ws["target_s"]))
    (RESULTS / "latency_vs_load.svg").write_text(figure(panels))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a running server (default: start the CPU profile privately)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per HTTP rate level")
    p.add_argument("--streams", default="1,2,3")
    p.add_argument("--ws-model", default="whisper-tiny.en")
    args = p.parse_args()
    url = args.url
    if url is None:
        from graphs import launch

        port = free_port()
        launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))
        url = f"http://127.0.0.1:{port}"
        launch.wait_ready(url, 600)
    try:
        http = sweep_http(url, args.duration)
        ws = sweep_ws(url, [int(n) for n in args.streams.split(",")], args.ws_model)
    finally:
        if args.url is None:
            launch.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps({"http": http, "ws": ws}, indent=1,
                                                     default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    report(http, ws)
    plots(http, ws)


if __name__ == "__main__":
    main()
