"""The Python client (clients/speech.py) against the running app: every family it covers, sync and async,
asserting on content (text, speakers, verdicts) and on the typed error."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from clients.calls import SpeechError
from clients.sockets import TTS_RATE, pcm_array
from clients.speech import AsyncSpeechClient, SpeechClient
from speechcore.audio import decode_audio, wav_bytes
from speechcore.textmetrics import wer
from tests.speech import CALL, best_error, cards, librivox

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
    def error() -> float:
        wav = client.speech("The quick brown fox jumps over the lazy dog.")
        assert wav[:4] == b"RIFF"
        return wer("the quick brown fox jumps over the lazy dog", client.transcribe(wav, language="en").text)
    assert best_error(error, 0.2) <= 0.2
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


def test_chat_streams_the_same_answer_piece_by_piece(client, base_url):
    """At temperature 0 the streamed pieces (sync and async) join into the whole answer."""
    question = [{"role": "user", "content": "Name three colors of the rainbow."}]
    whole = client.chat(question, "smollm2-135m", 24, temperature=0)
    pieces = list(client.stream_chat(question, "smollm2-135m", 24, temperature=0))

    async def stream() -> list[str]:
        async with AsyncSpeechClient(base_url) as c:
            return [p async for p in c.stream_chat(question, "smollm2-135m", 24, temperature=0)]
    assert len(pieces) > 3 and "".join(pieces) == whole == "".join(asyncio.run(stream()))
    with pytest.raises(SpeechError) as err:
        list(client.stream_chat(question, "gpt-nonexistent"))
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


def _dialogue() -> tuple[bytes, str, str]:
    """A short two-speaker recording (reader, cards speaker, reader) and each speaker's words."""
    (a0, r0), (a1, r1) = CLIPS[0], CLIPS[1]
    card_paths = list(cards().items())[:2]
    gap = np.zeros(8000, dtype=np.float32)
    parts = [decode_audio(a0.read_bytes()), gap, *[decode_audio(p.read_bytes()) for p, _ in card_paths], gap,
             decode_audio(a1.read_bytes())]
    return wav_bytes(np.concatenate(parts)), f"{r0} {r1}", " ".join(t for _, t in card_paths)


def test_job_is_diarized_polled_listed_and_exported(client):
    audio, reader_text, cards_text = _dialogue()
    seen = []
    result = client.transcribe_job(audio, on_progress=seen.append, interval_s=0.5, language="en", max_speakers=2)
    assert seen[-1].status == "completed" and seen[-1].progress == 1.0
    assert [j.progress for j in seen] == sorted(j.progress for j in seen)
    by_label = {}
    for s in result.segments:
        by_label.setdefault(s.speaker_label, []).append(s.text)
    assert sorted(by_label) == ["SPEAKER_00", "SPEAKER_01"] == sorted(result.unique_speakers)
    texts = {label: " ".join(t) for label, t in by_label.items()}
    reader = min(texts, key=lambda label: wer(reader_text, texts[label]))
    other = ({*texts} - {reader}).pop()
    assert wer(reader_text, texts[reader]) < 0.2 and wer(cards_text, texts[other]) < 0.35
    assert all(w.start <= w.end for s in result.segments for w in s.words) and result.language == "en"
    job_id = seen[-1].id
    assert job_id in [j.id for j in client.jobs()]
    assert client.job_result(job_id).segments == result.segments
    assert f"[{result.segments[0].speaker_name}] {result.segments[0].text}" in client.export_job(job_id, "srt")
    with pytest.raises(SpeechError) as err:
        client.job("tr_no_such_job")
    assert err.value.status == 404 and err.value.message == "Job not found"


def test_ws_tts_round_trips_and_reports_errors(client):
    text = "The weather is lovely today."

    def error() -> float:
        chunks = client.tts_stream(text, language="en")
        audio = pcm_array(chunks)
        assert len(chunks) >= 2 and 1.0 < audio.size / TTS_RATE < 5.0
        return wer(text, client.transcribe(wav_bytes(audio, TTS_RATE), language="en").text)
    assert best_error(error, 0.2) <= 0.2
    with pytest.raises(SpeechError) as err:
        client.tts_stream("Hello.", speaker_id="00000000-0000-0000-0000-000000000000")
    assert err.value.code == "speaker_not_found"


def test_voice_chat_text_turn_answers_in_text_and_24k_speech(client):
    # temperature 0 and a question whose answer is a sentence: a one-word answer ("Mali.") is too short to
    # tell speech from a near miss ("Molly") by WER
    events = client.voice_chat_turn("What color is the sky on a clear day?",
                                    {"language": "en", "max_tokens": 24, "playback_lead_ms": 10000, "temperature": 0,
                                     "system_prompt": "Answer in one full sentence."})
    kinds = [e.kind for e in events]
    answer = "".join(e.text for e in events if e.kind == "agent_text").strip()
    audio = pcm_array([e.audio for e in events if e.kind == "audio"])
    assert "error" not in kinds and kinds.count("agent_end") == 1 and answer
    assert kinds.index("thinking") < kinds.index("agent_text") < kinds.index("agent_end")
    after_end = set(kinds[kinds.index("agent_end") + 1:])
    assert kinds.index("thinking") < kinds.index("audio") and after_end <= {"audio", "latency"}
    heard = client.transcribe(wav_bytes(audio, TTS_RATE), language="en").text
    assert len(answer.split()) >= 3 and audio.size > TTS_RATE / 2 and wer(answer, heard) < 0.5


def test_async_voice_chat_session_hears_spoken_question(base_url):
    path, ref = CLIPS[1]
    question = np.concatenate([decode_audio(path.read_bytes()), np.zeros(16000, dtype=np.float32)])

    async def talk():
        async with AsyncSpeechClient(base_url) as c, c.voice_chat({"language": "en", "max_tokens": 16}) as chat:
            await chat.send_audio(question, speed=2.0)
            return await chat.turn()
    events = asyncio.run(talk())
    finals = [e.text for e in events if e.is_final]
    assert finals and wer(ref, " ".join(finals)) < 0.3
    kinds = [e.kind for e in events]
    assert kinds.count("agent_end") == 1 and "audio" in kinds and "error" not in kinds
    assert any(e.latency_s is not None and e.latency_s > 0 for e in events)
