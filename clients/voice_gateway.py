"""`voice-gateway` CLI from the speech gateway document, against this server's /v1/speech API.

Requests go through the typed client (clients.speech.SpeechClient, clients.calls); the microphone
streams over the gateway WebSocket directly.

  python -m clients.voice_gateway transcribe recording.wav [--language en] [--words] [--model M] [--json]
  python -m clients.voice_gateway transcribe --mic          (arecord -> WS /v1/speech/stream)
  python -m clients.voice_gateway speak "Hello world" --output greeting.wav [--voice V] [--speed 1.0]
  python -m clients.voice_gateway model list
  python -m clients.voice_gateway tts voices [--language en]

Server: --url or $VOICE_GATEWAY_URL (default http://localhost:8000); key: --api-key, $SPEECH_API_KEY or $API_KEY.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from clients import calls
from clients.calls import SpeechError
from clients.speech import SpeechClient


def _client(args) -> SpeechClient:
    return SpeechClient(args.url, api_key=args.api_key)


def transcribe(args) -> None:
    if args.mic:
        return asyncio.run(_mic(args))
    if not args.file:
        sys.exit("give an audio file or --mic")
    path = Path(args.file)
    if not path.is_file():
        sys.exit(f"no such file: {path}")
    with _client(args) as c:
        body = c.run(calls.gateway_transcribe(path, args.language, args.model, args.words))
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return
    print(body["text"])
    if args.words:
        for s in body["segments"]:
            for w in s.get("words", []):
                print(f"  {w['start_ms']:>7} {w['end_ms']:>7}  {w['word']}  ({w['confidence']:.2f})")


async def _mic(args) -> None:
    """Stream the microphone (ALSA arecord, 16 kHz pcm16 mono, 100 ms frames) and print results."""
    import websockets

    if not shutil.which("arecord"):
        sys.exit("--mic needs `arecord` (Debian package alsa-utils) and a capture device")
    rec = subprocess.Popen(["arecord", "-q", "-f", "S16_LE", "-r", "16000", "-c", "1", "-t", "raw"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = args.url.replace("http", "ws", 1) + "/v1/speech/stream"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "config", "encoding": "pcm16", "sample_rate": 16000, "channels": 1}))

        async def pump():
            while chunk := await asyncio.to_thread(rec.stdout.read, 3200):
                await ws.send(chunk)
            err = rec.stderr.read().decode().strip()
            sys.exit(f"microphone stopped: {err or 'no capture device'}")

        task = asyncio.create_task(pump())
        try:
            async for message in ws:
                m = json.loads(message)
                if "text" in m:
                    print(("final:   " if m.get("is_final") else "partial: ") + m["text"], flush=True)
        finally:
            task.cancel()
            rec.terminate()


def speak(args) -> None:
    fmt = args.format or Path(args.output).suffix.lstrip(".") or "wav"
    with _client(args) as c:
        audio = c.speech(args.text, args.voice, args.speed, fmt)
    Path(args.output).write_bytes(audio)
    print(f"wrote {len(audio)} bytes ({fmt}) to {args.output}")


def model_list(args) -> None:
    with _client(args) as c:
        models = c.run(calls.speech_models())
    for m in models:
        langs = m["languages"] if len(m["languages"]) < 6 else f"{len(m['languages'])} languages"
        print(f"{m['name']:<20} {'loaded' if m['loaded'] else 'not loaded':<11} "
              f"{m['size_bytes'] / 1e6:>7.0f} MB  {langs}  {m['description']}")


def tts_voices(args) -> None:
    with _client(args) as c:
        voices = c.voices(args.language)
    for v in voices:
        print(f"{v.name:<22} {v.language:<4} {v.gender or '':<7} {v.sample_rate:>6} Hz  {v.quality}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voice-gateway", description="Speech gateway CLI")
    p.add_argument("--url", default=os.environ.get("VOICE_GATEWAY_URL", "http://localhost:8000"))
    p.add_argument("--api-key", default=os.environ.get("SPEECH_API_KEY") or os.environ.get("API_KEY"))
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transcribe", help="transcribe a file or the microphone")
    t.add_argument("file", nargs="?")
    t.add_argument("--mic", action="store_true")
    t.add_argument("--language")
    t.add_argument("--model")
    t.add_argument("--words", "--word-timestamps", action="store_true", dest="words")
    t.add_argument("--json", action="store_true")
    t.set_defaults(run=transcribe)
    s = sub.add_parser("speak", help="synthesize text to an audio file")
    s.add_argument("text")
    s.add_argument("--output", "-o", required=True)
    s.add_argument("--voice")
    s.add_argument("--speed", type=float, default=1.0)
    s.add_argument("--format", choices=["wav", "mp3", "ogg", "raw"])
    s.set_defaults(run=speak)
    m = sub.add_parser("model", help="ASR models").add_subparsers(dest="action", required=True)
    m.add_parser("list").set_defaults(run=model_list)
    v = sub.add_parser("tts", help="TTS voices").add_subparsers(dest="action", required=True)
    vl = v.add_parser("voices")
    vl.add_argument("--language")
    vl.set_defaults(run=tts_voices)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except SpeechError as err:
        sys.exit(f"error {err.status}: {err.code}: {err.message}")
    except httpx.ConnectError:
        sys.exit(f"cannot reach the server at {args.url}: start it with `make run` or pass --url")


if __name__ == "__main__":
    main()
