"""Ray-free: the client's error reading and request building, the live protocols' wire format, and the load
generators' pieces (percentiles, stream scripts, SVG plots)."""
from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from clients import calls
from clients.calls import SpeechError, check
from clients.live import GatewayLive, PlatformLive
from clients.sockets import chat_event, pcm_array, tts_request, ws_url
from loadtest.plot import figure
from loadtest.stats import Samples, percentile
from loadtest.ws_load import script


@pytest.mark.parametrize("body, code, message", [
    ({"error": {"message": "bad file", "type": "invalid_request_error", "code": "invalid_audio_format"}},
     "invalid_audio_format", "bad file"),                                        # OpenAI family
    ({"error": {"code": "text_too_long", "message": "too long"}}, "text_too_long", "too long"),   # gateway
    ({"detail": "Speaker 'x' not found"}, "error", "Speaker 'x' not found"),     # FastAPI detail
])
def test_errors_are_read_from_every_family_shape(body, code, message):
    r = httpx.Response(429, json=body, headers={"Retry-After": "3"})
    with pytest.raises(SpeechError) as err:
        check(r)
    assert (err.value.status, err.value.code, err.value.message, err.value.retry_after_s) == (429, code, message, 3.0)


def test_transcribe_call_asks_for_sentences_and_words():
    c = calls.transcribe(b"RIFF", language="de", words=True, translate=True)
    assert (c.method, c.path) == ("POST", "/v1/audio/translations")
    assert c.kwargs["data"]["timestamp_granularities[]"] == ["segment", "word"] and c.kwargs["data"]["language"] == "de"
    body = {"text": "Hi there. Bye.", "language": "english", "duration": 2.5,
            "segments": [{"id": 0, "start": 0.1, "end": 1.2, "text": " Hi there."},
                         {"id": 1, "start": 1.5, "end": 2.0, "text": " Bye."}],
            "words": [{"word": "Hi", "start": 0.1, "end": 0.4}, {"word": "there.", "start": 0.4, "end": 1.2},
                      {"word": "Bye.", "start": 1.5, "end": 2.0}]}
    t = c.parse(httpx.Response(200, json=body))
    assert t.segments[0].text == "Hi there." and [w.word for w in t.segments[0].words] == ["Hi", "there."]
    assert [w.word for w in t.segments[1].words] == ["Bye."] and len(t.words) == 3
    assert calls.enroll("a/b c", b"x").path == "/speakers/a%2Fb%20c/enroll"   # a name never adds path segments


def test_live_protocols_speak_each_wire_format():
    chunk = np.array([0.0, 0.5, -1.0], dtype=np.float32)
    sent = json.loads(PlatformLive().audio(chunk))
    assert np.frombuffer(base64.b64decode(sent["audio_event"]["audio_base_64"]), "<i2").tolist() == [0, 16383, -32767]
    assert PlatformLive().event(json.dumps({"type": "transcript", "text": "hi", "is_final": True})).is_final
    gw = GatewayLive()
    assert json.loads(gw.start()[0])["encoding"] == "pcm16" and gw.audio(chunk) == sent_bytes(chunk)
    assert gw.event(json.dumps({"error": {"code": "x", "message": "m"}})).kind == "error"
    assert gw.event(json.dumps({"is_final": False, "text": "h"})).kind == "partial"


def sent_bytes(chunk: np.ndarray) -> bytes:
    return (np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes()


def test_load_pieces():
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == 10 and percentile([3.0], 50) == 3.0
    s = Samples()
    s.add("final", 0.5)
    s.fail("close 1011")
    assert s.summary("final")["n"] == 1 and s.errors["close 1011"] == 1
    plan = script([np.ones(16000, dtype=np.float32), np.ones(8000, dtype=np.float32)], pause_s=1.0)
    assert plan.turns == [(0, 9), (20, 24)] and plan.audio.size == (10 + 10 + 5 + 10) * 1600
    svg = figure([("tts", "req/s", [(1, 0.2, 0.3), (2, 0.4, float("nan"))], 1.5)])
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "p95 target 1.5 s" in svg


def test_job_calls_build_forms_and_parse_results():
    c = calls.submit_job(b"RIFF", language="en", max_speakers=2, snr_threshold=None)
    assert (c.method, c.path) == ("POST", "/api/transcribe")
    assert c.kwargs["data"] == {"language": "en", "min_speakers": "0", "max_speakers": "2"}
    assert calls.job("tr_a/../b").path == "/api/jobs/tr_a%2F..%2Fb"               # ids never add path segments
    seg = {"id": 0, "start": 0.0, "end": 1.0, "text": " Hi.", "speaker_label": "SPEAKER_00", "speaker_name": "Ann",
           "speaker_id": "spk_1", "similarity": 0.8, "words": [{"word": "Hi.", "start": 0.1, "end": 0.5, "score": 0.9}]}
    body = {"id": "tr_1", "status": "completed", "filename": "a.wav", "progress": 1.0,
            "result": {"id": "tr_1", "language": "en", "segments": [seg], "unique_speakers": ["Ann"]}}
    j = calls.job("tr_1").parse(httpx.Response(200, json=body))
    assert j.done and j.result is not None and j.result.text == "Hi."
    assert j.result.segments[0].words[0].probability == 0.9
    assert calls.failed(j) is j
    with pytest.raises(SpeechError) as err:
        calls.failed(calls.Job("tr_2", "failed", error="decode failed"))
    assert err.value.code == "job_failed" and err.value.message == "decode failed"


def test_socket_messages():
    assert tts_request("Hi", language="en", speed=None) == {"target_text": "Hi", "language": "en"}
    e = chat_event(json.dumps({"type": "latency", "step": "total", "value": "142ms"}))
    assert e.kind == "latency" and e.latency_s == pytest.approx(0.142)
    t = chat_event(json.dumps({"type": "transcript", "text": "hello", "is_final": True}))
    assert t.is_final and t.text == "hello" and t.latency_s is None
    a = chat_event(b"\x00\x40\x00\xc0")
    assert a.kind == "audio" and pcm_array([a.audio]).tolist() == [0.5, -0.5]
    assert ws_url("https://h:1", "/ws/tts", "x=1") == "wss://h:1/ws/tts?x=1"


def test_chat_delta_reads_streamed_text_and_raises_on_an_error_event():
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
    assert calls.chat_delta(f"data: {json.dumps(chunk)}") == "Hel"
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    assert calls.chat_delta(f"data: {json.dumps(role)}") is None
    assert calls.chat_delta("data: [DONE]") is None and calls.chat_delta("") is None
    usage = {"choices": [], "usage": {"prompt_tokens": 3}}
    assert calls.chat_delta(f"data: {json.dumps(usage)}") is None
    with pytest.raises(SpeechError) as err:
        calls.chat_delta('data: {"error": {"message": "ran out", "type": "server_error", "code": "llm_failed"}}')
    assert err.value.code == "llm_failed" and err.value.message == "ran out"
