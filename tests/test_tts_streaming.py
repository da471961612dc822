"""Streaming TTS over the running app: /ws/tts, /api/speakers, /api/collections, streamed
/v1/audio/speech (audio and SSE), /v1/speech/synthesize, /v1/audio/voices.

Speech is checked by transcribing it back with the server's own ASR; routing is
checked by comparing with the audio of the voice it must pick (espeak-ng is
deterministic, so the same voice gives the same samples)."""
from __future__ import annotations

import asyncio
import base64
import json
import uuid

import httpx
import numpy as np
import pytest
import websockets

from speechcore.audio import decode_audio, wav_bytes
from speechcore.textmetrics import error_rate, wer
from tests.speech import best_error

TEXT = "Please confirm the order for three blue chairs. Then send the invoice to my office."


@pytest.fixture(scope="module")
def ws_url(base_url) -> str:
    return base_url.replace("http://", "ws://")


@pytest.fixture(scope="module")
def speakers(base_url) -> dict[str, dict]:
    return {s["name"]: s for s in httpx.get(f"{base_url}/api/speakers").json()["speakers"]}


def heard_error(base_url: str, ws_url: str, request: dict, frames: list[bytes], limit: float) -> float:
    """WER of `frames` heard back, speaking `request` afresh while it is over `limit` (see best_error)."""
    given = iter([frames])

    def error() -> float:
        audio = pcm(next(given, None) or asyncio.run(tts_requests(ws_url, [request]))[0]["frames"])
        return wer(request["target_text"], transcribe(base_url, audio, 24000))
    return best_error(error, limit)


def transcribe(base_url: str, audio: np.ndarray, rate: int, language: str = "en") -> str:
    r = httpx.post(f"{base_url}/v1/speech/transcribe", files={"audio": ("tts.wav", wav_bytes(audio, rate))},
                   data={"language": language}, timeout=120)
    return r.json()["text"]


async def tts_requests(ws_url: str, requests: list) -> list[dict]:
    """Send each request on one connection; per request: the frames received and the closing event."""
    out = []
    async with websockets.connect(f"{ws_url}/ws/tts", max_size=None) as ws:
        for request in requests:
            await ws.send(request if isinstance(request, str) else json.dumps(request))
            frames = []
            while True:
                msg = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(msg, bytes):
                    frames.append(msg)
                    continue
                out.append({"frames": frames, "event": json.loads(msg)})
                break
    return out


def pcm(frames: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float32) / 32768


def test_ws_tts_streams_24k_pcm_for_several_requests_and_keeps_the_connection_on_errors(base_url, ws_url, speakers):
    unknown = str(uuid.uuid4())
    results = asyncio.run(tts_requests(ws_url, [
        {"target_text": TEXT},                                  # default voice (Piper joe)
        "{not json",
        {"target_text": "Hello.", "speaker_id": unknown},
        {"target_text": "Hello.", "collection_id": unknown},
        {"target_text": "  ...  "},
        {"target_text": 42},
        {"target_text": "Good morning to you.", "speaker_id": speakers["en_US-joe-medium"]["id"]},
    ]))
    first, *errors, last = results
    assert first["event"] == {"type": "end"} and len(first["frames"]) > 2         # streamed in several frames
    assert all(len(f) % 2 == 0 for f in first["frames"])
    audio = pcm(first["frames"])
    assert 3.0 < audio.size / 24000 < 8.0                                           # 24 kHz int16 mono
    assert heard_error(base_url, ws_url, {"target_text": TEXT}, first["frames"], 0.15) <= 0.15
    codes = [e["event"]["code"] for e in errors]
    assert codes == ["invalid_json", "speaker_not_found", "collection_not_found", "empty_text", "invalid_request"]
    assert all(e["event"]["type"] == "error" and e["event"]["message"] and not e["frames"] for e in errors)
    assert unknown in errors[1]["event"]["message"]
    assert last["event"] == {"type": "end"}
    joe = {"target_text": "Good morning to you.", "speaker_id": speakers["en_US-joe-medium"]["id"]}
    assert heard_error(base_url, ws_url, joe, last["frames"], 0.25) <= 0.25


def test_speakers_cover_every_collection_language_with_stable_uuids(base_url, speakers):
    again = {s["name"]: s["id"] for s in httpx.get(f"{base_url}/api/speakers?user_id=default").json()["speakers"]}
    assert again == {name: s["id"] for name, s in speakers.items()}
    assert all(uuid.UUID(s["id"]) and s["user_id"] == "default" and s["reference_audio"] for s in speakers.values())
    assert {"vi", "en", "fr", "ja", "ko", "zh", "ru"} <= {s["language"] for s in speakers.values()}
    voices = httpx.get(f"{base_url}/v1/audio/voices").json()["voices"]
    assert {v["id"] for v in voices} == set(speakers)
    assert {v["speaker_id"] for v in voices} == {s["id"] for s in speakers.values()}


def test_collections_crud_validation_and_language_routing(base_url, ws_url, speakers):
    en, fr, ru = (speakers[n]["id"] for n in ("en_US-joe-medium", "espeak-fr", "espeak-ru"))
    r = httpx.post(f"{base_url}/api/collections", json={"name": "Bot", "user_id": "tester", "description": "d",
                                                        "langs": {"en": en, "fr": fr}})
    assert r.status_code == 200 and r.json()["name"] == "Bot" and r.json()["user_id"] == "tester"
    cid = r.json()["id"]
    listed = httpx.get(f"{base_url}/api/collections", params={"user_id": "tester"}).json()["collections"]
    assert [c["id"] for c in listed] == [cid]
    assert listed[0]["langs"] == {"en": {"id": en, "name": "en_US-joe-medium"}, "fr": {"id": fr, "name": "espeak-fr"}}
    assert httpx.get(f"{base_url}/api/collections").json()["collections"] == [] or \
        cid not in [c["id"] for c in httpx.get(f"{base_url}/api/collections").json()["collections"]]

    bad_lang = httpx.post(f"{base_url}/api/collections", json={"name": "x", "user_id": "t", "langs": {"xx": en}})
    assert bad_lang.status_code == 422 and "'xx'" in bad_lang.json()["detail"]
    ghost = str(uuid.uuid4())
    bad_spk = httpx.put(f"{base_url}/api/collections/{cid}", json={"langs": {"fr": ghost}})
    assert bad_spk.status_code == 422 and ghost in bad_spk.json()["detail"]
    assert httpx.put(f"{base_url}/api/collections/{uuid.uuid4()}", json={"name": "n"}).status_code == 404

    put = httpx.put(f"{base_url}/api/collections/{cid}", json={"name": "Bot 2", "langs": {"fr": fr, "ru": ru}})
    assert put.status_code == 200 and put.json()["name"] == "Bot 2" and set(put.json()["langs"]) == {"fr", "ru"}

    # The collection's speaker for each language speaks: the same samples as asking for that speaker.
    routed, direct, ru_routed = asyncio.run(tts_requests(ws_url, [
        {"target_text": "Bonjour tout le monde.", "collection_id": cid, "language": "fr"},
        {"target_text": "Bonjour tout le monde.", "speaker_id": fr},
        {"target_text": "Privet, kak dela?", "collection_id": cid, "language": "ru"}]))
    assert routed["event"] == direct["event"] == {"type": "end"}
    assert b"".join(routed["frames"]) == b"".join(direct["frames"])
    assert b"".join(ru_routed["frames"]) != b"".join(direct["frames"]) and ru_routed["frames"]

    assert httpx.delete(f"{base_url}/api/collections/{cid}").json() == {"status": "deleted"}
    assert httpx.delete(f"{base_url}/api/collections/{cid}").status_code == 404
    assert httpx.get(f"{base_url}/api/collections/not-a-uuid").status_code == 404


def test_openai_speech_streams_chunked_audio(base_url):
    def error() -> float:
        with httpx.stream("POST", f"{base_url}/v1/audio/speech", timeout=120,
                          json={"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "mp3"}) as r:
            assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
            assert "content-length" not in r.headers
            chunks = list(r.iter_raw())
        assert len(chunks) >= 2
        return wer(TEXT, transcribe(base_url, decode_audio(b"".join(chunks)), 16000))
    assert best_error(error, 0.15) <= 0.15


def test_openai_speech_sse_events(base_url):
    def error() -> float:
        with httpx.stream("POST", f"{base_url}/v1/audio/speech", timeout=120,
                          json={"model": "tts-1", "input": TEXT, "response_format": "pcm",
                                "stream_format": "sse"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) > 2
        assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] > 0
        audio = pcm([base64.b64decode(e["audio"]) for e in events[:-1]])
        return wer(TEXT, transcribe(base_url, audio, 24000))
    assert best_error(error, 0.15) <= 0.15


def test_streamed_wav_and_errors_before_streaming(base_url):
    r = httpx.post(f"{base_url}/v1/audio/speech", timeout=120,
                   json={"model": "tts-1", "input": "Hello there.", "response_format": "wav"})
    assert r.content[4:8] == b"\xff\xff\xff\xff" and abs(len(decode_audio(r.content, 24000)) / 24000 - 1.0) < 0.8
    bad = httpx.post(f"{base_url}/v1/audio/speech", json={"model": "tts-1", "input": "hi", "voice": "nobody",
                                                           "stream_format": "sse"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "voice"
    gw = httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": "hi", "format": "ogg", "voice": "ghost"})
    assert gw.status_code == 404 and gw.json()["error"]["code"] == "voice_not_found"


def test_japanese_goes_to_kokoro_and_round_trips(base_url, ws_url, speakers):
    """`language: ja` with no speaker picks a Kokoro voice (espeak-ng's Japanese is unintelligible)."""
    text = "今日はいい天気なので、公園に行きます。"
    kokoro = {n for n, s in speakers.items() if s["language"] == "ja" and n.startswith(("jf_", "jm_"))}
    assert kokoro == {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}
    routed, direct = asyncio.run(tts_requests(ws_url, [{"target_text": text, "language": "ja"},
                                                       {"target_text": text, "speaker_id": speakers["jm_kumo"]["id"]}]))
    assert routed["event"] == direct["event"] == {"type": "end"}
    for result in (routed, direct):
        assert error_rate(text, transcribe(base_url, pcm(result["frames"]), 24000, "ja"), by_char=True) <= 0.2
