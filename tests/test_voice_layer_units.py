"""Voice layer without Ray: the wire format (parse/render, configuration checks and mapping), the
external chat backend bridge against a real loopback HTTP server, and `?api_key=` WebSocket auth."""
from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from graphs import routers
from graphs.ingress import app
from graphs.routers.voice_layer_wire import (AudioBlob, AudioChunk, AudioEnd, BackendConfig, ConfigureSession,
                                             PreviousText, SessionConfig, SttConfig, VoiceLayerSerializer,
                                             stt_fields)
from graphs.voice_layer import PromptedASR
from graphs.voice_layer_backend import BackendChat, chat_for
from speechcore.errors import ApiError
from speechcore.schemas import ChatMessage, Generated, Segment, Speech, TranscribeOptions, Transcript, Word
from speechcore.sessions.conversation import ChatOptions
from speechcore.sessions.events import AudioIn, Commit, EndOfInput, Error, Final, StreamError, TextIn
from speechcore.settings import get_settings
from tests.fakes import fake_services
from tests.voice_backend import BACKEND_KEY, Backend
from tests.voice_backend import start as start_backend


def text(body) -> dict:
    return {"type": "websocket.receive", "text": json.dumps(body)}


def parse_error(serializer: VoiceLayerSerializer, message: dict) -> StreamError:
    with pytest.raises(StreamError) as err:
        serializer.parse(message)
    assert err.value.close_code is None            # every parse error leaves the session usable
    return err.value


# -- parse -------------------------------------------------------------------------------------------
def test_configure_is_typed_and_reports_unknown_fields():
    s = VoiceLayerSerializer()
    event, = s.parse(text({"type": "session.configure", "session_id": "a", "stt": {"audio_format": "pcm_44100",
                                                                                   "colour": "red"},
                           "tts": {"output_format": "mp3_44100_128", "voice_settings": {"stability": 0.3}}}))
    assert isinstance(event, ConfigureSession)
    config = event.config
    assert config.stt.rate == 44100 and config.stt.ignored() == ["colour"]
    assert config.tts.rate == 44100 and not config.tts.streamed and config.tts.voice_settings.speed == 1.0
    assert SessionConfig().tts.streamed and SessionConfig().tts.rate == 24000 and SessionConfig().stt.rate == 16000


@pytest.mark.parametrize("fields, where", [
    ({"stt": {"audio_format": "pcm_8000", "sample_rate": 16000}}, "does not match"),
    ({"stt": {"sample_rate": 11025}}, "stt.sample_rate"),
    ({"stt": {"commit_strategy": "sometimes"}}, "stt.commit_strategy"),
    ({"stt": {"vad_threshold": 1.5}}, "stt.vad_threshold"),
    ({"stt": {"vad_silence_threshold_secs": 0}}, "stt.vad_silence_threshold_secs"),
    ({"stt": {"min_speech_duration_ms": -1}}, "stt.min_speech_duration_ms"),
    ({"tts": {"output_format": "ulaw_8000"}}, "tts.output_format"),
    ({"tts": {"voice_settings": {"speed": 9}}}, "tts.voice_settings.speed"),
    ({"session_id": "x" * 500}, "session_id"),
])
def test_bad_configuration_is_a_recoverable_error_naming_the_field(fields, where):
    err = parse_error(VoiceLayerSerializer(), text({"type": "session.configure", **fields}))
    assert err.code == "invalid_config" and where in err.message


def test_stt_fields_drive_turn_detection():
    mapped = stt_fields(SttConfig(vad_threshold=0.7, vad_silence_threshold_secs=1.2, min_speech_duration_ms=400,
                                  min_silence_duration_ms=2000, include_timestamps=True, language_code="de"))
    assert mapped == {"language": "de", "vad_threshold": 0.7, "silence_ms": 1200, "speculate_ms": 1200,
                      "min_speech_ms": 400, "word_timestamps": True}
    assert stt_fields(SttConfig(min_silence_duration_ms=100))["speculate_ms"] == 100


def test_audio_needs_a_configuration_then_is_resampled_from_its_rate():
    s = VoiceLayerSerializer()
    pcm = (np.sin(np.arange(4800) / 5) * 10000).astype("<i2").tobytes()       # 100 ms at 48 kHz
    assert parse_error(s, {"bytes": pcm}).code == "not_configured"
    assert parse_error(s, text({"type": "audio.commit"})).code == "not_configured"
    s.configured(48000)
    total = sum(s.parse({"bytes": pcm})[0].audio.size for _ in range(10))
    assert abs(total - 16000) < 400                                              # 1 s of 48 kHz -> 16 kHz
    b64 = base64.b64encode(pcm[:1600]).decode()                                  # 100 ms at 8 kHz
    prev, audio = s.parse(text({"type": "audio.append", "audio": b64, "sample_rate": 8000,
                                "previous_text": " Chapter one. "}))
    assert prev == PreviousText("Chapter one.") and isinstance(audio, AudioIn)
    assert parse_error(s, text({"type": "audio.append", "audio": "@@"})).code == "invalid_audio"
    assert parse_error(s, text({"type": "audio.append", "audio": b64, "sample_rate": 12345})).code == \
        "invalid_sample_rate"
    assert parse_error(s, {"bytes": b"\x00\x01\x02"}).code == "invalid_audio"


def test_commands_and_bad_messages():
    s = VoiceLayerSerializer()
    s.configured(16000)
    assert s.parse(text({"type": "audio.commit"})) == [Commit()]
    assert s.parse(text({"type": "text.prompt", "text": " Hello "})) == [TextIn("Hello")]
    assert s.parse(text({"type": "session.close"})) == [EndOfInput()]
    assert parse_error(s, text({"type": "text.prompt", "text": ""})).code == "invalid_text"
    assert parse_error(s, text({"type": "text.prompt", "text": "x" * 5000})).code == "invalid_text"
    assert parse_error(s, text({"type": "nope"})).code == "unknown_type"
    assert parse_error(s, {"text": "{bad"}).code == "invalid_json"


# -- render ------------------------------------------------------------------------------------------
def test_render_transcripts_audio_and_errors():
    s = VoiceLayerSerializer()
    words = [Word(" Hello", 0.1, 0.4, 0.9), Word(" there.", 0.5, 0.9, 0.8)]
    t = Transcript("Hello there.", "en", 1.0, 1.0, [Segment(0, 0.1, 0.9, "Hello there.", words=words)])
    assert s.render(Final(0, t, 2.0, 3.0, offset_s=1.8)) == {
        "type": "transcript.committed", "text": "Hello there.", "language": "en", "start_ms": 2000, "end_ms": 3000,
        "words": [{"text": "Hello", "start": 1.9, "end": 2.2}, {"text": "there.", "start": 2.3, "end": 2.7}]}
    assert "words" not in s.render(Final(0, Transcript("Hi", "en", 1.0, 1.0, [Segment(0, 0, 1, "Hi")]), 0, 1))
    chunk = s.render(AudioChunk(3, b"\x01\x00", "pcm_24000", 7))
    assert chunk == {"type": "assistant.audio.chunk", "turn_id": 3, "audio": "AQA=", "output_format": "pcm_24000",
                     "content_type": "application/octet-stream", "chunk_index": 7}
    assert s.render(AudioEnd(3, "pcm_24000", 7, interrupted=True))["interrupted"] is True
    assert "interrupted" not in s.render(AudioEnd(3, "pcm_24000", 7))
    assert s.render(AudioBlob(1, b"ID3", "audio/mpeg", "mp3_44100_128"))["content_type"] == "audio/mpeg"
    assert s.render(Error("x", "Readable.")) == {"type": "error", "code": "x", "message": "Readable."}
    assert s.render(TextIn("not carried")) is None


# -- previous_text -> ASR prompt -----------------------------------------------------------------------------
def test_previous_text_is_the_prompt_of_the_segment(monkeypatch):
    seen: list[TranscribeOptions] = []

    async def fake_transcribe(svc, model, audio, options):
        seen.append(options)
        return Transcript("x", "en", 1.0, 0.1, [])

    monkeypatch.setattr("graphs.voice_layer.live_transcribe", fake_transcribe)
    prompt = ["Chapter one."]
    asr = PromptedASR(None, "whisper-base", prompt)                 # type: ignore[arg-type]
    asyncio.run(asr(np.zeros(160, np.float32), TranscribeOptions(language="en")))
    prompt[0] = ""
    asyncio.run(asr(np.zeros(160, np.float32), TranscribeOptions(language="en")))
    assert [o.prompt for o in seen] == ["Chapter one.", None] and seen[0].language == "en"


# -- the external chat backend --------------------------------------------------------------------------------
@pytest.fixture
def env(monkeypatch):
    def set_env(**values: str) -> None:
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()

    for name in ("SPEECH_API_KEY", "API_KEY", "SPEECH_BACKEND_BASE_URL", "SPEECH_BACKEND_API_KEY",
                 "SPEECH_DEFAULT_REGISTRATION_ID", "SPEECH_ALLOW_FRONTEND_BACKEND_AUTH"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


def test_backend_choice_and_credentials_policy(env):
    svc = fake_services()
    chat = asyncio.run(chat_for(svc, BackendConfig(), "s"))
    assert chat.describe() == {"type": "local", "model": svc.spec.role("llm").model}
    with pytest.raises(ApiError) as err:
        asyncio.run(chat_for(svc, BackendConfig(registration_id="r"), "s"))
    assert err.value.code == "no_backend"
    env(SPEECH_BACKEND_BASE_URL=start_backend(), SPEECH_BACKEND_API_KEY=BACKEND_KEY)
    with pytest.raises(ApiError) as err:
        asyncio.run(chat_for(svc, BackendConfig(provider="custom", api_key="k", model="m"), "s"))
    assert err.value.code == "backend_auth_not_allowed" and "registration_id" in err.value.message
    assert isinstance(asyncio.run(chat_for(svc, BackendConfig(), "s")).describe()["model"], str)   # still local
    env(SPEECH_DEFAULT_REGISTRATION_ID="reg-default")
    chat = asyncio.run(chat_for(svc, BackendConfig(), "s"))
    assert chat.describe() == {"type": "custom", "registration_id": "reg-default"}
    asyncio.run(chat.aclose())


def test_backend_bridge_registers_once_and_sends_the_history(env):
    env(SPEECH_BACKEND_BASE_URL=start_backend(), SPEECH_BACKEND_API_KEY=BACKEND_KEY,
        SPEECH_ALLOW_FRONTEND_BACKEND_AUTH="true")
    Backend.calls.clear()
    custom = BackendConfig(provider="custom", api_key="k", model="unit-1", base_url="https://x.invalid",
                           system_prompt="Be brief.")

    async def scenario():
        chats = [await chat_for(fake_services(), custom, f"s{i}") for i in range(2)]
        history = [ChatMessage("system", "sys"), ChatMessage("user", "Hi."), ChatMessage("assistant", "Hello."),
                   ChatMessage("user", "How are you?")]
        pieces = [p async for p in chats[0].stream(history, ChatOptions())]
        for chat in chats:
            await chat.aclose()
        return chats[0], pieces

    chat, pieces = asyncio.run(scenario())
    assert pieces == ["You said How are you?. Thank you."]
    assert chat.metadata == {"backend": "custom", "registration_id": "reg-unit-1", "turns_seen": 2}
    assert [p for p, _ in Backend.calls] == ["/v1/register", "/v1/chat"]       # the registration is cached
    assert Backend.calls[1][1] == {"registration_id": "reg-unit-1", "session_id": "s0", "message": "How are you?",
                                   "history": [{"role": "user", "content": "Hi."},
                                               {"role": "assistant", "content": "Hello."}]}


def test_backend_failures_are_readable_errors(env):
    root = start_backend()
    env(SPEECH_BACKEND_BASE_URL=root, SPEECH_BACKEND_API_KEY="wrong")

    async def reply(chat: BackendChat) -> list[str]:
        try:
            return [p async for p in chat.stream([ChatMessage("user", "x")], ChatOptions())]
        finally:
            await chat.aclose()

    with pytest.raises(ApiError) as err:
        asyncio.run(reply(asyncio.run(chat_for(fake_services(), BackendConfig(registration_id="reg-a"), "s"))))
    assert err.value.code == "backend_error" and "401" in err.value.message and root not in err.value.message
    env(SPEECH_BACKEND_BASE_URL="http://127.0.0.1:9", SPEECH_BACKEND_API_KEY=BACKEND_KEY)
    with pytest.raises(ApiError) as err:
        asyncio.run(reply(asyncio.run(chat_for(fake_services(), BackendConfig(registration_id="reg-a"), "s"))))
    assert err.value.code == "backend_unreachable" and "127.0.0.1" not in err.value.message


# -- ?api_key= on WebSockets ------------------------------------------------------------------------------
def test_websocket_api_key_by_query_parameter(env):
    env(SPEECH_API_KEY="s3cret")
    routers.bind(fake_services())
    try:
        with TestClient(app) as client:
            for url in ("/v1/voice/ws", "/v1/voice/ws?api_key=wrong"):
                with pytest.raises(WebSocketDisconnect) as refused:
                    with client.websocket_connect(url):
                        pass
                assert refused.value.code == 1008
            with client.websocket_connect("/v1/voice/ws?api_key=s3cret") as ws:
                assert ws.receive_json() == {"type": "session.ready", "message": "Send session.configure to begin."}
            with client.websocket_connect("/v1/speech/stream?api_key=s3cret") as ws:    # every WebSocket family
                ws.send_json({"type": "end"})
                assert "error" in ws.receive_json()
            assert client.get("/v1/models?api_key=s3cret").status_code == 401          # never on HTTP
            page = client.get("/test")
            assert page.status_code == 200 and "/v1/voice/ws" in page.text and "api_key" in page.text
    finally:
        routers.bind(None)   # type: ignore[arg-type]


# -- the session over fake deployments (in-process app) ------------------------------------------------------
@pytest.fixture
def fake_svc(env):
    """Fake deployments with a scripted LLM and a TTS that speaks 50 ms of tone per word."""
    svc = fake_services()

    async def generate(messages, params):
        for piece in ["Paris ", "is the capital, ", "of France. ", "Nice."]:
            yield Generated(text=piece)
        yield Generated(finish_reason="stop", prompt_tokens=20, completion_tokens=4)

    async def synthesize(text, voice, speed, language=None):
        yield Speech(audio=np.full(int(800 * len(text.split()) / speed), 0.1, np.float32), sample_rate=16000)

    svc.fakes["llm"].generate = generate
    svc.fakes["tts"].synthesize = synthesize
    svc.fakes["tts"].voices = lambda: [{"id": "00000000-0000-4000-8000-000000000001", "name": "fake-voice",
                                        "language": "en", "engine": "fake", "sample_rate": 16000}]
    routers.bind(svc)
    yield svc
    routers.bind(None)   # type: ignore[arg-type]


def answer(ws, tts: dict, until: str) -> list[dict]:
    assert ws.receive_json()["type"] == "session.ready"
    ws.send_json({"type": "session.configure", "stt": {"language_code": "en"}, "tts": tts})
    assert [ws.receive_json()["type"] for _ in range(2)] == ["session.configured", "stt.session_started"]
    ws.send_json({"type": "text.prompt", "text": "Capital of France?"})
    events = [ws.receive_json()]
    while events[-1]["type"] != until:
        events.append(ws.receive_json())
    return events


def test_session_answers_a_prompt_with_metadata_and_pcm_frames(fake_svc):
    with TestClient(app) as client, client.websocket_connect("/v1/voice/ws") as ws:
        events = answer(ws, {"output_format": "pcm_16000", "voice_id": "fake-voice"}, "assistant.audio.end")
        ws.send_json({"type": "session.configure"})
        assert ws.receive_json()["code"] == "already_configured"
    kinds = [e["type"] for e in events]
    assert kinds[0] == "assistant.started" and events[0]["text"] == "Capital of France?"
    message = next(e for e in events if e["type"] == "assistant.message")
    assert message["text"] == "Paris is the capital, of France. Nice."
    assert message["metadata"] | {"timings_ms": None} == {
        "backend": "local", "model": "smollm2-135m", "finish_reason": "stop", "prompt_tokens": 20,
        "completion_tokens": 4, "timings_ms": None, "turn_id": 1, "interrupted": False}
    chunks = [e for e in events if e["type"] == "assistant.audio.chunk"]
    assert kinds.index("assistant.audio.start") < kinds.index("assistant.audio.chunk")
    assert [c["chunk_index"] for c in chunks] == list(range(1, events[-1]["chunk_count"] + 1))
    pcm = b"".join(base64.b64decode(c["audio"]) for c in chunks)
    assert len(pcm) // 2 == 800 * 7                                  # 7 words, 50 ms each, at 16 kHz


def test_session_sends_mp3_as_one_blob(fake_svc):
    with TestClient(app) as client, client.websocket_connect("/v1/voice/ws") as ws:
        events = answer(ws, {"output_format": "mp3_44100_128"}, "assistant.audio")
    assert not [e for e in events if e["type"].startswith("assistant.audio.")]
    blob = events[-1]
    assert blob["content_type"] == "audio/mpeg" and base64.b64decode(blob["audio"])[:3] in (b"ID3", b"\xff\xfb")
