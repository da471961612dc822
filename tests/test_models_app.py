"""Moonshine and ERes2Net served under Ray Serve: model choice, listings, refusals, live default, speakers."""
from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from bench.live_client import stream_platform
from speechcore.audio import decode_audio
from speechcore.textmetrics import wer
from tests.speech import librivox

CLIPS = list(librivox().items())
MOON = "moonshine-base"


def post(base_url: str, path: str, field: str, data: bytes, **form):
    return httpx.post(f"{base_url}{path}", files={field: ("clip.wav", data)}, data=form, timeout=120)


def test_moonshine_is_listed_everywhere(base_url):
    speech = httpx.get(f"{base_url}/v1/speech/models").json()["models"]
    moon = next(m for m in speech if m["name"] == MOON)
    assert moon["languages"] == ["en"] and moon["backend"] == "moonshine-onnx" and not moon["default"]
    assert next(m for m in speech if m["default"])["name"] == "whisper-base"   # files keep Whisper base
    assert MOON in [m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"]]


@pytest.mark.parametrize("path,field", [("/transcribe", "file"), ("/v1/audio/transcriptions", "file"),
                                        ("/v1/speech/transcribe", "audio")])
def test_requests_naming_moonshine_are_transcribed_by_it(base_url, handles, path, field):
    (clip, ref) = CLIPS[0]
    before = sum(handles("asr_moonshine_base").batch_sizes.remote().result())
    r = post(base_url, path, field, clip.read_bytes(), model=MOON)
    assert r.status_code == 200, r.text
    assert wer(ref, r.json()["text"]) <= 0.1, r.text
    assert sum(handles("asr_moonshine_base").batch_sizes.remote().result()) == before + 1


def test_concurrent_moonshine_requests_share_the_deployment_and_keep_their_own_text(base_url):
    async def all_clips():
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/transcribe", files={"file": ("c.wav", p.read_bytes())},
                                                      data={"model": MOON}) for p, _ in CLIPS))
    for (_, ref), r in zip(CLIPS, asyncio.run(all_clips())):
        assert r.status_code == 200 and wer(ref, r.json()["text"]) <= 0.1, r.text


def test_word_timestamps_on_moonshine_are_a_400_naming_the_model(base_url):
    data = CLIPS[0][0].read_bytes()
    r = httpx.post(f"{base_url}/v1/audio/transcriptions", files={"file": ("c.wav", data)}, timeout=120,
                   data={"model": MOON, "response_format": "verbose_json", "timestamp_granularities[]": "word"})
    assert r.status_code == 400 and MOON in r.json()["error"]["message"], r.text
    r = post(base_url, "/v1/speech/transcribe", "audio", data, model=MOON, word_timestamps="true")
    assert r.status_code == 400 and "word timestamps" in r.json()["error"]["message"], r.text
    r = post(base_url, "/transcribe", "file", data, model=MOON, language="de")
    assert r.status_code == 400 and MOON in r.json()["detail"]
    srt = post(base_url, "/v1/audio/transcriptions", "file", data, model=MOON, response_format="srt")
    assert srt.status_code == 200 and "-->" in srt.text and wer(CLIPS[0][1], srt.text.split("\n", 2)[2]) <= 0.1


def test_english_live_sessions_default_to_moonshine(base_url, handles):
    audio, ref = decode_audio(CLIPS[1][0].read_bytes()), CLIPS[1][1]
    audio = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(16000, np.float32)])
    ws = base_url.replace("http://", "ws://")
    counts = lambda name: sum(handles(name).batch_sizes.remote().result())  # noqa: E731
    before = counts("asr_moonshine_base")
    finals = asyncio.run(stream_platform(ws, audio, speed=4.0, query="language=en")).finals()
    assert len(finals) == 1 and wer(ref, finals[0]["text"]) <= 0.15, finals
    assert counts("asr_moonshine_base") > before
    before = counts("asr_moonshine_base")     # naming a model (or no language) keeps Whisper
    for query in ("language=en&model=whisper-base", ""):
        finals = asyncio.run(stream_platform(ws, audio, speed=4.0, query=query)).finals()
        assert len(finals) == 1 and wer(ref, finals[0]["text"]) <= 0.3, finals   # Whisper: "an old supposed"
    assert counts("asr_moonshine_base") == before


def test_speaker_embedding_default_is_eres2net(handles):
    info = handles("speaker_embedding").info.remote().result()
    assert info["backend"] == "eres2net-onnx" and info["extra"]["dim"] == 192
    a, b = (decode_audio(p.read_bytes()) for p, _ in CLIPS[:2])
    ea, eb = (np.asarray(handles("speaker_embedding").embed.remote(x).result()) for x in (a, b))
    assert ea.shape == (192,) and float(ea @ eb) > 0.35    # the same reader: above the configured threshold
