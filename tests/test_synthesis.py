"""TTS over HTTP: gateway /v1/speech/synthesize + /voices and OpenAI /v1/audio/speech.
The audio is checked by transcribing it back with the server's own ASR."""
from __future__ import annotations

import httpx
import pytest

from speechcore.audio import decode_audio
from speechcore.textmetrics import wer
from tests.speech import best_error

TEXT = "Please confirm the order for three blue chairs."
# Piper samples its noise and durations, so the small ASR mishears two of these 8 words in about 1 run in 50
# ("Police confirmed"): each check speaks the text up to 3 times (best_error); 0.25 still fails on anything
# that is not this sentence.
MAX_WER = 0.25


def transcribe_back(base_url: str, data: bytes, name: str) -> str:
    r = httpx.post(f"{base_url}/v1/speech/transcribe", files={"audio": (name, data)}, data={"language": "en"},
                   timeout=120)
    return r.json()["text"]


@pytest.mark.parametrize("fmt,content_type", [("wav", "audio/wav"), ("mp3", "audio/mpeg"), ("ogg", "audio/ogg")])
def test_gateway_synthesize_speaks_the_text(base_url, fmt, content_type):
    def error() -> float:
        r = httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": TEXT, "format": fmt}, timeout=120)
        assert r.status_code == 200 and r.headers["content-type"] == content_type
        return wer(TEXT, transcribe_back(base_url, r.content, f"tts.{fmt}"))
    assert best_error(error, MAX_WER) <= MAX_WER


def test_gateway_synthesize_raw_and_speed(base_url):
    normal = httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": TEXT, "format": "raw"}, timeout=120)
    fast = httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": TEXT, "format": "raw", "speed": 1.5},
                      timeout=120)
    assert normal.headers["content-type"] == "audio/pcm" and len(normal.content) % 2 == 0
    assert len(fast.content) < 0.8 * len(normal.content)


def test_gateway_voices_and_errors(base_url):
    voices = httpx.get(f"{base_url}/v1/speech/voices").json()["voices"]
    names = {v["name"] for v in voices}
    assert "en_US-joe-medium" in names and "espeak-fr" in names
    assert all(set(v) == {"name", "language", "gender", "sample_rate", "quality"} for v in voices)
    en = httpx.get(f"{base_url}/v1/speech/voices", params={"language": "en"}).json()["voices"]
    assert en and all(v["language"] == "en" for v in en)
    r = httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": "hi", "voice": "en_US-amy-medium"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "voice_not_found"
    assert httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": " "}).status_code == 400
    assert httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": "hi", "speed": 9}).status_code == 400
    bad = httpx.post(f"{base_url}/v1/speech/synthesize", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json()


def test_espeak_voice_for_another_language(base_url):
    r = httpx.post(f"{base_url}/v1/speech/synthesize", json={"text": "Bonjour tout le monde", "voice": "espeak-fr"})
    audio = decode_audio(r.content)
    assert r.status_code == 200 and len(audio) / 16000 > 0.8


def test_openai_client_speech(base_url):
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="x", timeout=120)
    def error() -> float:
        mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
        return wer(TEXT, transcribe_back(base_url, mp3.content, "speech.mp3"))
    assert best_error(error, MAX_WER) <= MAX_WER
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.", response_format="pcm")
    assert 0.5 < len(pcm.content) / 2 / 24000 < 3.0   # 24 kHz s16le as OpenAI sends


def test_openai_speech_bad_input_is_400_in_openai_shape(base_url):
    for body, param in [({"input": ""}, "input"), ({"input": "hi", "speed": 9}, "speed"),
                        ({"input": "hi", "response_format": "wma"}, None), ({"voice": "alloy"}, None)]:
        r = httpx.post(f"{base_url}/v1/audio/speech", json={"model": "tts-1", **body})
        err = r.json()["error"]
        assert r.status_code == 400 and err["type"] == "invalid_request_error" and err["message"], (body, r.text)
        if param:
            assert err["param"] == param


@pytest.mark.parametrize("voice", ["en_US-joe-medium", "espeak-fr"])
def test_speed_is_delivered_across_the_accepted_range(base_url, voice):
    """Duration ratios against speed 1.0 match 1/speed from 0.25 to 4.0 (engines alone saturate)."""
    def seconds(speed: float) -> float:
        # Piper's durations are sampled: about 1 run in 100 comes out 10-18% longer, so take a median of 3.
        lengths = []
        for _ in range(3):
            r = httpx.post(f"{base_url}/v1/speech/synthesize", timeout=300,
                           json={"text": TEXT, "voice": voice, "speed": speed, "format": "raw"})
            assert r.status_code == 200, r.text
            lengths.append(len(r.content) / 2)
        return sorted(lengths)[1]
    normal = seconds(1.0)
    for speed in (0.25, 0.5, 2.0, 4.0):
        assert abs(normal / seconds(speed) / speed - 1) < 0.1, (voice, speed)


def test_openai_voice_names_are_explicit_aliases(base_url):
    """alloy and shimmer are the default (English Piper) voice: each speaks the text intelligibly."""
    def error(voice: str) -> float:
        r = httpx.post(f"{base_url}/v1/audio/speech", timeout=120,
                       json={"model": "tts-1", "input": TEXT, "voice": voice, "response_format": "wav"})
        assert r.status_code == 200, r.text
        return wer(TEXT, transcribe_back(base_url, r.content, f"{voice}.wav"))
    for voice in ("alloy", "shimmer"):
        assert best_error(lambda: error(voice), MAX_WER) <= MAX_WER, voice
