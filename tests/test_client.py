"""The Python client (clients/speech.py) against the running app: every family it covers, sync and async,
asserting on content (text, speakers, verdicts) and on the typed error."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from clients.calls import SpeechError
from clients.speech import AsyncSpeechClient, SpeechClient
from speechcore.audio import decode_audio
from speechcore.textmetrics import wer
from tests.speech import CALL, cards, librivox

CLIPS = list(librivox().items())


@pytest.fixture(scope="module")
def client(base_url):
    with SpeechClient(base_url) as c:
        yield c


def test_transcribe_with_words_and_models(client):
    path, ref = CLIPS[0]
    t = client.transcribe(path, language="en", words=True)
    assert wer(ref, t.text) < 0.1 and t.language == "english" and abs(t.duration - 7.1) < 0.2
    words = [w for s in t.segments for w in s.words]
    assert words == t.words and words[0].word.lower() == "and" and all(w.start <= w.end for w in words)
    assert {"whisper-1", "whisper-base", "whisper-tiny.en"} <= set(client.models())


def test_errors_are_typed(client):
    with pytest.raises(SpeechError) as err:
        client.transcribe(b"definitely not audio")
    assert err.value.status == 400 and err.value.code == "invalid_audio_format"
    with pytest.raises(SpeechError) as err:
        client.verify("nobody-by-this-name", CLIPS[0][0])
    assert err.value.status == 404 and "nobody-by-this-name" in err.value.message


def test_speech_round_trips_and_streams(client):
    wav = client.speech("The quick brown fox jumps over the lazy dog.")
    assert wav[:4] == b"RIFF"
    assert wer("the quick brown fox jumps over the lazy dog", client.transcribe(wav, language="en").text) < 0.2
    chunks = list(client.stream_speech("One sentence here. And another one there.", fmt="raw"))
    assert len(chunks) >= 1 and sum(map(len, chunks)) > 22050      # more than half a second of 22 kHz pcm16
    assert any(v.language.startswith("en") for v in client.voices("en"))


def test_speakers_enroll_identify_verify_delete(client):
    reader = [p for p, _ in CLIPS]
    other = next(iter(cards()))
    assert client.enroll("client-reader", reader[0]) > 0
    client.enroll("client-reader", reader[1])
    client.enroll("client-cards", other)
    assert {"client-reader", "client-cards"} <= set(client.speakers())
    who = client.identify(reader[2])
    assert who.accepted and who.speaker == "client-reader" and who.confidence >= who.threshold
    assert client.verify("client-reader", reader[3]).accepted
    assert not client.verify("client-cards", reader[3]).accepted
    for name in ("client-reader", "client-cards"):
        client.delete_speaker(name)
    assert "client-reader" not in client.speakers()


def test_voice_endpoints(client):
    results = client.anti_spoof([CLIPS[0][0]])
    assert len(results) == 1 and results[0].result in ("real", "fake", "not_speech")
    assert "gender" in client.voice_profile(CALL)


def test_chat(client):
    text = client.chat([{"role": "user", "content": "What is the capital of France?"}], "smollm2-135m", 24)
    assert text.strip()
    with pytest.raises(SpeechError) as err:
        client.chat([{"role": "user", "content": "Hi"}], "gpt-nonexistent")
    assert err.value.status == 404 and err.value.code == "model_not_found"


@pytest.mark.parametrize("protocol", ["platform", "gateway"])
def test_live_transcription_both_protocols(client, protocol):
    path, ref = CLIPS[0]
    audio = np.concatenate([decode_audio(path.read_bytes()), np.zeros(16000, dtype=np.float32)])
    events = client.live(audio, protocol=protocol, speed=4.0)
    finals = [e.text for e in events if e.is_final]
    assert finals and wer(ref, " ".join(finals)) < 0.15
    assert not [e for e in events if e.kind == "error"]


def test_async_client_runs_calls_concurrently(base_url):
    async def both():
        async with AsyncSpeechClient(base_url) as c:
            assert await c.ready()
            return await asyncio.gather(*(c.transcribe(p, language="en", model="whisper-tiny.en") for p, _ in CLIPS[:2]))
    results = asyncio.run(both())
    for (_, ref), t in zip(CLIPS[:2], results):
        assert wer(ref, t.text) < 0.3
