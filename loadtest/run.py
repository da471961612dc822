"""Load sweep on the CPU profile: each HTTP family at rising request rates (open loop), then live
transcription at rising numbers of real-time streams, then `/ws/tts` and voice chat at rising numbers of
concurrent clients; prints tables, writes loadtest/results/ (JSON and SVG plots). A level is sustained
when p95 latency is under the family's target with 0 errors.
Run: `make loadtest` (starts configs/serve_cpu.yaml on a private Ray instance; about 10 minutes),
or against a running server: `python loadtest/run.py --url http://host:8000`;
`--only tts,voice-chat --clients 1,4` runs just those.
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
from loadtest.ws_load import run_clients, run_streams, script, tts_client, voice_chat_client  # noqa: E402
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
                                 "3 s clip, POST /verify (ERes2Net)"),
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


def sweep_tts(url: str, clients: list[int], duration_s: float) -> dict[str, Any]:
    """Each client sends its next sentence over one `/ws/tts` connection once the last is answered."""
    texts = [f"{SENTENCE} Reference {i}." for i in range(8)]
    rows = []
    for n in clients:
        samples = asyncio.run(run_clients(n, lambda s, delay: tts_client(url, texts, duration_s, s, delay)))
        first, total = samples.summary("first_audio"), samples.summary("total")
        errors = sum(samples.errors.values())
        rows.append({"clients": n, "requests": total["n"], "first_p50": first["p50"], "first_p95": first["p95"],
                     "total_p50": total["p50"], "total_p95": total["p95"], "throughput": total["n"] / duration_s,
                     "errors": errors, "error_kinds": dict(samples.errors),
                     "sustained": errors == 0 and first["p95"] <= 1.0})
    return {"target_s": 1.0, "levels": rows}


def sweep_voice_chat(url: str, clients: list[int], rounds: int) -> dict[str, Any]:
    """Each client asks a 3 s recorded question `rounds` times at real time in one session."""
    question = decode_audio(CLIPS[1].read_bytes())
    rows = []
    for n in clients:
        samples = asyncio.run(run_clients(n, lambda s, delay: voice_chat_client(url, question, rounds, s, delay)))
        v = samples.summary("voice_to_voice")
        errors = sum(samples.errors.values())
        rows.append({"clients": n, "turns": v["n"], "p50": v["p50"], "p95": v["p95"], "max": v["max"], "errors": errors,
                     "error_kinds": dict(samples.errors), "sustained": errors == 0 and v["p95"] <= 2.0})
    return {"target_s": 2.0, "levels": rows}


def report_sockets(tts: dict[str, Any] | None, chat: dict[str, Any] | None) -> None:
    r = round
    if tts:
        table("/ws/tts (Piper, one 15-word sentence per request, closed loop per client)",
              ["clients", "requests", "first audio p50 (s)", "first audio p95 (s)", "total p50 (s)",
               "total p95 (s)", "requests/s", "errors"],
              [[lv["clients"], lv["requests"], r(lv["first_p50"], 2), r(lv["first_p95"], 2), r(lv["total_p50"], 2),
                r(lv["total_p95"], 2), r(lv["throughput"], 2), lv["errors"]] for lv in tts["levels"]])
    if chat:
        table("Voice chat (/ws/voice-chat, 3 s spoken question at real time, max_tokens 24)",
              ["clients", "turns", "voice-to-voice p50 (s)", "p95 (s)", "max (s)", "errors"],
              [[lv["clients"], lv["turns"], r(lv["p50"], 2), r(lv["p95"], 2), r(lv["max"], 2),
                f"{lv['errors']} {lv['error_kinds'] or ''}".strip()] for lv in chat["levels"]])


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
    p.add_argument("--only", default="http,live,tts,voice-chat", help="families to run, comma-separated")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per HTTP rate level and /ws/tts level")
    p.add_argument("--streams", default="1,2,3")
    p.add_argument("--ws-model", default="whisper-tiny.en")
    p.add_argument("--clients", default="1,2,4", help="concurrent /ws/tts and voice chat clients per level")
    p.add_argument("--chat-rounds", type=int, default=2, help="questions per voice chat client")
    args = p.parse_args()
    only, clients = set(args.only.split(",")), [int(n) for n in args.clients.split(",")]
    url = args.url
    if url is None:
        from graphs import launch

        port = free_port()
        launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))
        url = f"http://127.0.0.1:{port}"
        launch.wait_ready(url, 600)
    try:
        http = sweep_http(url, args.duration) if "http" in only else None
        ws = sweep_ws(url, [int(n) for n in args.streams.split(",")], args.ws_model) if "live" in only else None
        tts = sweep_tts(url, clients, args.duration) if "tts" in only else None
        chat = sweep_voice_chat(url, clients, args.chat_rounds) if "voice-chat" in only else None
    finally:
        if args.url is None:
            launch.stop()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "results.json"                 # families not run keep their last results
    kept = json.loads(path.read_text()) if path.is_file() else {}
    ran = {k: v for k, v in {"http": http, "ws": ws, "tts": tts, "voice_chat": chat}.items() if v is not None}
    merged = {**kept, **ran}
    path.write_text(json.dumps(merged, indent=1,
                               default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    if merged.get("http") and merged.get("ws"):     # tables and plot from each family's latest results
        report(merged["http"], merged["ws"])
        plots(merged["http"], merged["ws"])
    report_sockets(tts, chat)


if __name__ == "__main__":
    main()
