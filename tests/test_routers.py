"""Routers in-process: the ingress's FastAPI app against fake deployments (tests/fakes.py), no Ray.

Validation, error shapes per family, health states, CORS and auth; the same
app object Serve runs, with the real middleware, routers and request graphs.
"""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from graphs import routers, transcription, voiceprints
from graphs.ingress import app
from graphs.readiness import DeploymentState
from speechcore.audio import wav_bytes
from speechcore.errors import error_body
from speechcore.schemas import TranscribeOptions
from speechcore.settings import get_settings
from tests.audio_files import header_only_wav, silence_wav
from tests.fakes import SENTENCES, fake_services


def tone(seconds: float, start_s: float = 0.5, rate: int = 16000) -> bytes:
    """Silence, then a loud tone of `seconds` (the fake VAD's speech), then silence."""
    t = np.arange(int(seconds * rate)) / rate
    audio = np.concatenate([np.zeros(int(start_s * rate)), 0.3 * np.sin(2 * np.pi * 220 * t), np.zeros(rate // 2)])
    return wav_bytes(audio.astype(np.float32))


@pytest.fixture
def env(monkeypatch):
    """Set SPEECH_* (or other) variables for one test; the settings object is rebuilt around it."""
    def set_env(**values: str) -> None:
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()

    for name in ("SPEECH_API_KEY", "API_KEY", "SPEECH_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def svc(env, tmp_path):
    env(SPEECH_DATA_DIR=str(tmp_path))   # an empty voiceprint store, whatever ran before in this session
    voiceprints.store.cache_clear()
    fake = fake_services()
    routers.bind(fake)
    yield fake
    routers.bind(None)   # type: ignore[arg-type]
    voiceprints.store().close()
    voiceprints.store.cache_clear()


@pytest.fixture
def client(svc):
    with TestClient(app) as c:
        yield c


def upload(field: str, data: bytes, name: str = "a.wav"):
    return {field: (name, io.BytesIO(data), "audio/wav")}


# --- validation and error shapes per family -------------------------------------------------------

def test_missing_upload_in_each_family_shape(client):
    assert client.post("/transcribe").json()["detail"][0]["loc"] == ["body", "file"]   # FastAPI's 422 list
    r = client.post("/v1/speech/transcribe", data={"language": "en"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request" and "audio" in r.text
    r = client.post("/v1/audio/transcriptions", data={"model": "whisper-1"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == "invalid_request_error" and err["param"] == "file"


@pytest.mark.parametrize("method,path,kwargs,status,code", [
    ("get", "/v1/audio/nothing-here", {}, 404, "not_found"),
    ("get", "/v1/models/whisper-9000", {}, 404, "model_not_found"),
    ("get", "/v1/audio/transcriptions", {}, 405, "method_not_allowed"),
    ("post", "/v1/audio/transcriptions", {"files": upload("file", header_only_wav())}, 422, "no_audio"),
    ("post", "/v1/audio/transcriptions", {"files": upload("file", b"\0" * 2048)}, 413, "file_too_large"),
])
def test_openai_4xx_have_openai_shape_and_a_client_error_type(client, env, method, path, kwargs, status, code):
    env(SPEECH_MAX_UPLOAD_BYTES="1024")
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error" and set(err) == {
        "message", "type", "param", "code"}


@pytest.mark.parametrize("status,kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                         (403, "permission_error"), (404, "invalid_request_error"),
                                         (405, "invalid_request_error"), (413, "invalid_request_error"),
                                         (422, "invalid_request_error"), (429, "requests"),
                                         (500, "server_error"), (503, "server_error")])
def test_openai_error_type_by_status(status, kind):
    assert error_body("/v1/audio/speech", status, "x", "m")["error"]["type"] == kind


def test_openai_granularities_and_formats(client):
    clip = upload("file", tone(3.0))
    r = client.post("/v1/audio/transcriptions", files=clip, data={"response_format": "json",
                                                                   "timestamp_granularities[]": "segment"})
    assert r.json() == {"text": " ".join(SENTENCES), "usage": {"type": "duration", "seconds": 4}}
    r = client.post("/v1/audio/transcriptions", files=upload("file", tone(3.0)),
                    data={"response_format": "json", "timestamp_granularities[]": "word"})
    assert r.status_code == 400 and "verbose_json" in r.json()["error"]["message"]
    r = client.post("/v1/audio/transcriptions", files=upload("file", tone(3.0)), data={"response_format": "docx"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    assert client.get("/v1/models/whisper-tiny.en").json() == {"id": "whisper-tiny.en", "object": "model",
                                                              "created": 0, "owned_by": "speech-serve"}


def test_verbose_json_and_subtitles_are_cut_into_sentences(client, svc):
    r = client.post("/v1/audio/transcriptions", files=upload("file", tone(9.0)),
                    data={"response_format": "verbose_json", "language": "en"})
    body = r.json()
    assert [s["text"] for s in body["segments"]] == SENTENCES
    assert body["segments"][0]["start"] < body["segments"][1]["start"] < body["segments"][2]["start"]
    assert "words" not in body and body["usage"]["type"] == "duration"
    assert svc.fakes["asr_whisper_base"].requests[-1].options.word_timestamps   # words asked for, to cut at
    srt = client.post("/v1/audio/transcriptions", files=upload("file", tone(9.0)), data={"response_format": "srt"})
    assert srt.text.count(" --> ") == 3 and "\n2\n" in srt.text
    plain = client.post("/transcribe", files=upload("file", tone(9.0))).json()   # platform keeps decode chunks
    assert len(plain["segments"]) == 1 and plain["segments"][0]["tokens"] == [1, 2, 3]


@pytest.mark.parametrize("path,field", [("/transcribe", "file"), ("/v1/speech/transcribe", "audio"),
                                        ("/v1/audio/transcriptions", "file")])
def test_silence_is_an_empty_transcript_and_calls_no_model(client, svc, path, field):
    r = client.post(path, files=upload(field, silence_wav(2.0)), data={"language": "en"})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "" and r.json().get("segments", []) == []
    assert svc.fakes["asr_whisper_base"].requests == []


def test_long_recording_is_planned_into_slices_and_merged_in_recording_time(svc):
    """310 s with 290 s of 'speech': two ASR requests (at most 240 s of speech each), each with its own
    slice of audio, one language detected for both, segments back in recording time and order."""
    audio = np.zeros(16000 * 320, dtype=np.float32)
    t = np.arange(16000 * 150) / 16000
    audio[16000 * 10:16000 * 160] = 0.3 * np.sin(2 * np.pi * 220 * t)
    audio[16000 * 170:16000 * 310] = 0.3 * np.sin(2 * np.pi * 220 * t[: 16000 * 140])
    result, _ = asyncio.run(transcription.transcribe(svc, audio, None, TranscribeOptions()))
    asr = svc.fakes["asr_whisper_base"]
    assert len(asr.requests) == 2 and {r.options.language for r in asr.requests} == {"en"}
    assert asr.calls.count("detect_language") == 1
    assert sum(len(r.audio) for r in asr.requests) < len(audio) - 16000 * 15     # slices, not the recording
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and starts[0] == pytest.approx(9.8, abs=0.1)
    assert result.segments[-1].end == pytest.approx(310.2, abs=0.1) and result.duration == 320.0
    assert not any(160.5 < s.start < 169.5 for s in result.segments)              # the gap is not decoded


# --- health and readiness states --------------------------------------------------------------------

def test_health_readyz_and_status_follow_deployment_states(client, svc):
    assert client.get("/health").json() == {"status": "ok"} and client.get("/readyz").status_code == 200
    svc.readiness.states["asr_whisper_tiny_en"] = DeploymentState("HEALTHY", "", 0, scales_to_zero=True)
    assert client.get("/health").json() == {"status": "ok"}       # scaled to zero is ready: a request wakes it
    row = {r["deployment"]: r for r in client.get("/status").json()["deployments"]}["asr_whisper_tiny_en"]
    assert row["ready"] and row["replicas"] == 0 and row["scales_to_zero"]
    r = client.post("/v1/speech/transcribe", files=upload("audio", tone(2.0)), data={"model": "whisper-tiny.en"})
    assert r.status_code == 200 and r.json()["text"]
    svc.readiness.states["llm"] = DeploymentState("DEPLOYING", "", 0)
    svc.readiness.states["tts"] = DeploymentState("HEALTHY", "cannot be placed: GPU", 0, True, placeable=False)
    assert client.get("/health").json() == {"status": "degraded", "not_ready": ["tts", "llm"]}
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["not_ready"] == ["tts", "llm"]
    r = client.post("/v1/speech/synthesize", json={"text": "hello"})
    assert r.status_code == 503 and "cannot be placed" in r.json()["error"]["message"]
    assert client.get("/healthz").json() == {"ok": True, "ready": False}


# --- CORS -------------------------------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization"}


def test_preflight_without_configured_origins_is_403_never_405(client):
    r = client.options("/v1/speech/transcribe", headers=PREFLIGHT)
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/v1/speech/models", headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_configured_origins_get_cors_headers(client, env):
    env(SPEECH_CORS_ORIGINS="https://app.example, http://localhost:3000")
    r = client.options("/transcribe", headers=PREFLIGHT)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = client.get("/v1/speech/models", headers={"Origin": "http://localhost:3000"})
    assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    r = client.options("/transcribe", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    env(SPEECH_CORS_ORIGINS="*")
    assert client.options("/transcribe", headers={**PREFLIGHT, "Origin": "https://any.example"}).status_code == 200


# --- auth -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variable", ["SPEECH_API_KEY", "API_KEY"])
def test_api_key_on_http(client, env, variable):
    env(**{variable: "s3cret"})
    r = client.get("/v1/speech/models")
    assert r.status_code == 401 and r.json() == {"error": {"code": "unauthorized", "message": "Unauthorized"}}
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/status").json() == {"detail": "Unauthorized"}
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).json()["error"]["type"] == \
        "authentication_error"
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert [client.get(p).status_code for p in ("/health", "/healthz", "/readyz", "/openapi.json")] == [200] * 4
    assert client.options("/transcribe", headers=PREFLIGHT).status_code == 403   # preflights skip auth (CORS rules)


def test_speech_api_key_wins_over_api_key(client, env):
    env(SPEECH_API_KEY="primary", API_KEY="secondary")
    assert client.get("/status", headers={"X-API-Key": "primary"}).status_code == 200
    assert client.get("/status", headers={"X-API-Key": "secondary"}).status_code == 401


def test_websocket_without_the_key_is_refused_before_accept(client, env):
    env(API_KEY="s3cret")
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/v1/speech/stream"):
            pass
    assert refused.value.code == 1008      # over a real server this is an HTTP 403 on the handshake
    with client.websocket_connect("/v1/speech/stream", headers={"X-API-Key": "s3cret"}) as ws:
        ws.send_json({"type": "end"})
        assert "error" in ws.receive_json()   # accepted: the session answers (end before config)


# --- speakers: policies in the graph, order of checks kept ------------------------------------------

def test_speaker_checks_come_before_the_upload_is_read(client):
    r = client.post("/identify", files=upload("file", b""))
    assert r.status_code == 400 and r.json()["detail"].startswith("No speakers enrolled")
    r = client.post("/verify", params={"name": "nobody-here"}, files=upload("file", b""))
    assert r.status_code == 404 and r.json() == {"detail": "Speaker 'nobody-here' not found"}
    short = wav_bytes(np.full(3200, 0.3, dtype=np.float32))   # 0.2 s
    r = client.post("/voice/anti-spoof", files=[("files", ("short.wav", io.BytesIO(short), "audio/wav"))])
    assert r.status_code == 422 and r.json()["detail"].startswith("short.wav:")
