"""Live transcription under Ray Serve: real WebSocket clients stream real recordings
in 100 ms chunks (at real time and faster) to /ws/transcribe/vad and /v1/speech/stream."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time

import av
import httpx
import numpy as np
import pytest
import websockets

from bench.live_client import chunks, platform_message, run_stream, stream_platform
from speechcore.audio import decode_audio, float_to_pcm16, resample
from speechcore.settings import get_settings
from speechcore.textmetrics import wer
from tests.speech import CALL, call_transcript, librivox

TINY = "model=whisper-tiny.en"
END = json.dumps({"type": "end"})
# Stability runs with one app: SPEECH_TEST_REPEAT=20 runs each test (or those whose name matches
# SPEECH_TEST_REPEAT_ONLY, a regular expression) 20 times.
REPEAT = int(os.environ.get("SPEECH_TEST_REPEAT", "1"))
REPEAT_ONLY = os.environ.get("SPEECH_TEST_REPEAT_ONLY", "")


def pytest_generate_tests(metafunc):
    if REPEAT > 1 and re.search(REPEAT_ONLY, metafunc.function.__name__):
        metafunc.fixturenames.append("repeat")
        metafunc.parametrize("repeat", range(REPEAT))


def clip(name: str) -> tuple[np.ndarray, str]:
    path, ref = next((p, r) for p, r in librivox().items() if p.stem.endswith(name))
    return decode_audio(path.read_bytes()), ref


def pause(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


@pytest.fixture(scope="module")
def ws_url(base_url) -> str:
    return base_url.replace("http://", "ws://")


def run(coro):
    return asyncio.run(coro)


# -- /ws/transcribe/vad ----------------------------------------------------------------------------
def test_realtime_stream_gives_partials_then_finals_per_turn(ws_url):
    (a, ref_a), (b, ref_b) = clip("0870"), clip("0880")
    audio = np.concatenate([pause(0.5), a, pause(1.0), b, pause(1.0)])
    result = run(stream_platform(ws_url, audio, speed=1.0))
    assert result.close_code == 1000
    assert all(e["type"] == "transcript" for e in result.events), result.events   # no SSAP unless asked
    finals = result.finals()
    assert len(finals) == 2, result.events
    assert wer(ref_a, finals[0]["text"]) <= 0.15 and wer(ref_b, finals[1]["text"]) <= 0.2, finals
    first_final = result.events.index(finals[0])
    partials = [e for e in result.events[:first_final] if e["is_final"] is False]
    assert partials and all(wer(ref_a, p["text"]) < 1.0 for p in partials), result.events
    assert len(partials[-1]["text"]) >= len(partials[0]["text"])


def test_call_streamed_faster_than_real_time_splits_finals_at_real_pauses(ws_url, handles):
    audio = decode_audio(CALL.read_bytes())
    # the call's speakers leave few pauses of 300 ms (Silero finds two): 200 ms splits its real turns;
    # it is a quiet phone line (much speech under -40 dBFS), so the RMS gate is lowered too
    message = [json.dumps({"type": "config", "encoding": "pcm16", "sample_rate": 16000, "channels": 1,
                           "model": "whisper-tiny.en", "language": "en", "silence_ms": 200,
                           "volume_threshold": 0.002})]
    frames = [float_to_pcm16(c) for c in chunks(audio)]
    result = run(run_stream(f"{ws_url}/v1/speech/stream", frames, speed=0, first=message, last=[END]))
    finals = result.finals()
    assert len(finals) >= 4, finals
    assert wer(call_transcript(), " ".join(f["text"] for f in finals)) <= 0.35
    starts = [f["start_ms"] for f in finals]
    assert starts == sorted(starts) and starts[0] / 1000 == pytest.approx(6.68, abs=0.5)
    probs = handles("vad").frame_probs.remote(audio).result()     # the whole call, offline
    for f, after in zip(finals, finals[1:]):   # between two finals the offline VAD hears a pause too
        gap = probs[int(f["end_ms"] / 32): int(after["start_ms"] / 32)]
        assert after["start_ms"] - f["end_ms"] >= 150 and gap.size and gap.min() < 0.35, (f, after)


def test_end_frame_flushes_the_open_turn(ws_url):
    a, ref = clip("0930")
    result = run(stream_platform(ws_url, a, speed=0, query=TINY))   # no trailing silence: only `end` ends it
    assert result.close_code == 1000
    finals = result.finals()
    assert len(finals) == 1 and wer(ref, finals[0]["text"]) <= 0.2, result.events


def test_concurrent_sessions_are_independent(ws_url):
    names = ["0880", "0890", "0920", "0930"]
    clips = [clip(n) for n in names]

    async def all_sessions():
        return await asyncio.gather(*[stream_platform(ws_url, np.concatenate([a, pause(0.6)]), speed=2.0,
                                                      query=TINY) for a, _ in clips])

    for (_, ref), result in zip(clips, run(all_sessions())):
        finals = result.finals()
        assert len(finals) == 1 and wer(ref, finals[0]["text"]) <= 0.3, (ref, result.events)


@pytest.mark.parametrize("how", ["query", "config"])
def test_ssap_events_follow_finals_when_enabled(ws_url, how):
    a, _ = clip("0880")
    audio = np.concatenate([a, pause(0.6)])
    url = f"{ws_url}/ws/transcribe/vad?{TINY}" + ("&ssap=true" if how == "query" else "")
    first = [json.dumps({"type": "config", "ssap": True})] if how == "config" else []
    result = run(run_stream(url, [platform_message(c) for c in chunks(audio)], speed=0, first=first, last=[END]))
    kinds = [e["type"] for e in result.events]
    assert "ssap" in kinds and kinds.index("ssap") > kinds.index("transcript"), result.events
    props = result.of("ssap")[0]["properties"]
    assert props and all(isinstance(v, dict) and v for v in props.values()), props
    assert all(abs(sum(v.values()) - 1) < 0.05 for v in props.values())


# -- /v1/speech/stream -----------------------------------------------------------------------------
def _encode(audio16k: np.ndarray, encoding: str, rate: int, channels: int) -> list[bytes]:
    audio = resample(audio16k, 16000, rate)
    if encoding == "opus":
        return _opus_packets(audio, channels)
    frames = []
    for c in chunks(audio, rate=rate):
        c = np.repeat(c, channels)
        frames.append(float_to_pcm16(c) if encoding == "pcm16" else c.astype("<f4").tobytes())
    return frames


def _opus_packets(audio48k: np.ndarray, channels: int) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo" if channels == 2 else "mono", "s16"
    pcm = (np.clip(audio48k, -1, 1) * 32767).astype(np.int16)
    packets = []
    for i in range(0, pcm.size - 960, 960):
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm[i:i + 960], channels).reshape(1, -1), format="s16",
                                           layout=enc.layout.name)
        frame.sample_rate = 48000
        packets += [bytes(p) for p in enc.encode(frame)]
    return packets


@pytest.mark.parametrize("encoding,rate,channels", [("pcm16", 16000, 1), ("pcm16", 8000, 1),
                                                    ("float32", 48000, 2), ("opus", 48000, 1),
                                                    ("pcm16", 44100, 2)])
def test_gateway_stream_formats_give_final_with_word_timings(ws_url, encoding, rate, channels):
    a, ref = clip("0920")
    audio = np.concatenate([pause(0.3), a, pause(0.8)])
    config = {"type": "config", "encoding": encoding, "sample_rate": rate, "channels": channels,
              "model": "whisper-tiny.en"}
    frames = _encode(audio, encoding, rate, channels)
    speed = 0 if encoding != "opus" else 0   # opus packets are 20 ms each; paced or not, same audio
    result = run(run_stream(f"{ws_url}/v1/speech/stream", frames, speed=speed, first=[json.dumps(config)],
                            last=[END]))
    assert not result.errors(), result.events
    finals = result.finals()
    assert len(finals) == 1, result.events
    f = finals[0]
    assert wer(ref, f["text"]) <= (0.25 if rate == 8000 else 0.2), f["text"]
    assert f["language"] == "en" and 0 < f["confidence"] <= 1
    assert f["start_ms"] == pytest.approx(300, abs=400) and f["end_ms"] == pytest.approx(300 + len(a) / 16, abs=500)
    words = f["words"]
    assert len(words) >= 15 and [w["start_ms"] for w in words] == sorted(w["start_ms"] for w in words)
    assert all(w["start_ms"] <= w["end_ms"] and 0 <= w["confidence"] <= 1 for w in words)
    assert f["start_ms"] - 300 <= words[0]["start_ms"] and words[-1]["end_ms"] <= f["end_ms"] + 600
    assert all("type" not in e for e in result.events)   # the gateway's messages are bare results


def test_gateway_partials_carry_confidence_language_and_span(ws_url):
    a, ref = clip("0870")
    config = json.dumps({"type": "config", "encoding": "pcm16", "sample_rate": 16000, "channels": 1,
                         "model": "whisper-tiny.en", "partial_interval": 1.0})
    frames = [float_to_pcm16(c) for c in chunks(np.concatenate([a, pause(0.6)]))]
    result = run(run_stream(f"{ws_url}/v1/speech/stream", frames, speed=1.0, first=[config], last=[END]))
    partials = result.of(final=False)
    assert partials, result.events
    assert result.events.index(result.finals()[0]) > result.events.index(partials[-1])
    p = partials[0]
    assert set(p) == {"is_final", "text", "confidence", "language", "start_ms", "end_ms"}
    assert p["language"] == "en" and p["text"] and p["start_ms"] < p["end_ms"]


# -- bad input -------------------------------------------------------------------------------------
def test_bad_messages_get_error_events_and_the_session_carries_on(ws_url):
    a, ref = clip("0880")
    odd = base64.b64encode(b"\x01\x02\x03").decode()
    bad = ["{not json", "[1, 2]", json.dumps({"audio_event": {"audio_base_64": "%%%not-base64"}}),
           json.dumps({"audio_event": {"audio_base_64": odd}}), json.dumps({"type": "dance"})]
    messages = [platform_message(c) for c in chunks(np.concatenate([a, pause(0.6)]))]
    result = run(run_stream(f"{ws_url}/ws/transcribe/vad?{TINY}", messages, speed=0, first=bad, last=[END]))
    codes = [e["code"] for e in result.errors()]
    assert codes == ["invalid_json", "invalid_json", "invalid_base64", "invalid_frame", "unknown_message"], \
        result.events
    assert all(e["message"] for e in result.errors())
    assert result.close_code == 1000 and wer(ref, result.finals()[0]["text"]) <= 0.3


@pytest.mark.parametrize("query,config,code", [
    ("language=xx", None, "unsupported_language"),
    ("silence_ms=long", None, "invalid_config"),
    ("idle_timeout_s=soon", None, "invalid_config"),
    (TINY, {"type": "config", "language": "de"}, "unsupported_language"),      # an English-only model
    (TINY, {"type": "config", "silence_ms": "long"}, "invalid_config"),
    ("", {"type": "config", "language": "klingon"}, "unsupported_language"),
])
def test_invalid_session_options_are_refused_with_1003(ws_url, query, config, code):
    a, _ = clip("0930")
    first = [json.dumps(config)] if config else []
    messages = [platform_message(c) for c in chunks(a[:16000])]    # sent only if the session is still open
    result = run(run_stream(f"{ws_url}/ws/transcribe/vad?{query}", messages, speed=0, first=first, last=[END]))
    assert result.close_code == 1003, result.events
    assert [e["code"] for e in result.errors()] == [code] and not result.of("transcript"), result.events
    message = result.errors()[0]["message"]
    assert "Traceback" not in message and "/" not in message, message


def test_a_bad_language_never_reaches_the_model_nor_hurts_other_sessions(ws_url):
    """Sessions asking for languages the model lacks, beside a good one on the same ASR deployment:
    each bad one is refused (1003) before any audio is decoded; the good one is untouched."""
    a, ref = clip("0880")
    audio = np.concatenate([a, pause(0.6)])
    bad = [("?language=xx", []), ("?language=zz-ZZ", []), ("", [json.dumps({"type": "config", "language": "qq"})])]

    async def scenario():
        good = asyncio.create_task(stream_platform(ws_url, audio, speed=0))
        refused = [run_stream(f"{ws_url}/ws/transcribe/vad{q}", [platform_message(c) for c in chunks(audio)],
                              speed=0, first=first, last=[END]) for q, first in bad]
        return await good, await asyncio.gather(*refused)

    good, refused = run(scenario())
    assert not good.errors() and good.close_code == 1000, good.events
    assert wer(ref, " ".join(f["text"] for f in good.finals())) <= 0.2
    for r in refused:
        assert r.close_code == 1003 and [e["code"] for e in r.errors()] == ["unsupported_language"], r.events
        assert "not supported" in r.errors()[0]["message"] and not r.of("transcript")


def test_sessions_beyond_the_limit_are_refused_with_1013(ws_url, base_url):
    limit = get_settings().max_live_sessions

    async def scenario():
        held = [await websockets.connect(f"{ws_url}/ws/transcribe/vad?{TINY}") for _ in range(limit)]
        deadline = time.time() + 30
        while httpx.get(f"{base_url}/ws/transcribe/sessions").json()["sessions"] < limit and time.time() < deadline:
            await asyncio.sleep(0.2)
        try:
            refused = await run_stream(f"{ws_url}/ws/transcribe/vad?{TINY}", [], speed=0)
        finally:
            for ws in held:
                await ws.close()
        a, _ = clip("0930")
        deadline = time.time() + 30
        while httpx.get(f"{base_url}/ws/transcribe/sessions").json()["sessions"] > 0 and time.time() < deadline:
            await asyncio.sleep(0.2)
        return refused, await stream_platform(ws_url, a, speed=0, query=TINY)

    refused, after = run(scenario())
    assert refused.close_code == 1013, refused.events
    error, = refused.errors()
    assert error["code"] == "too_many_sessions" and str(limit) in error["message"]
    assert after.close_code == 1000 and after.finals()                     # slots free again once they close
    stats = httpx.get(f"{base_url}/ws/transcribe/sessions").json()
    assert stats["max_sessions"] == limit and stats["families"]["platform"]["refused"] >= 1


def _single(url: str, messages: list) -> object:
    return run(run_stream(url, [], speed=0, first=messages))


def test_frame_over_the_size_limit_closes_with_1009(ws_url):
    big = json.dumps({"audio_event": {"audio_base_64": "A" * (get_settings().stream_max_frame_bytes + 4)}})
    result = _single(f"{ws_url}/ws/transcribe/vad", [big])
    assert result.close_code == 1009 and result.errors()[0]["code"] == "frame_too_large"


@pytest.mark.parametrize("config,code,close", [
    ({"type": "config", "encoding": "pcm16", "sample_rate": 22050, "channels": 1}, "invalid_config", 1003),
    ({"type": "config", "encoding": "mp3", "sample_rate": 16000, "channels": 1}, "invalid_config", 1003),
    ({"type": "config", "encoding": "pcm16", "sample_rate": 16000, "channels": 6}, "invalid_config", 1003),
    ({"type": "config", "model": "whisper-huge"}, "model_not_found", 1008),
    ({"type": "config", "language": "xx"}, "unsupported_language", 1003),
    ({"type": "config", "model": "whisper-tiny.en", "language": "fr"}, "unsupported_language", 1003),
    ({"type": "config", "partial_interval": 0}, "invalid_config", 1003),
])
def test_gateway_bad_config_is_refused_with_a_close_code(ws_url, config, code, close):
    result = _single(f"{ws_url}/v1/speech/stream", [json.dumps(config)])
    assert result.close_code == close, result.events
    error = result.events[0]["error"]
    assert error["code"] == code and error["message"], result.events


def test_gateway_audio_before_config_is_a_protocol_error(ws_url):
    result = _single(f"{ws_url}/v1/speech/stream", [b"\0\0" * 1600])
    assert result.close_code == 1008 and result.events[0]["error"]["code"] == "config_required"


def test_platform_wrong_sample_rate_is_refused(ws_url):
    result = _single(f"{ws_url}/ws/transcribe/vad", [json.dumps({"type": "config", "sample_rate": 8000})])
    assert result.close_code == 1003 and result.errors()[0]["code"] == "unsupported_sample_rate"


def test_idle_client_is_flushed_and_closed(ws_url):
    a, ref = clip("0930")
    messages = [platform_message(c) for c in chunks(a)]   # speech, then the client goes quiet
    result = run(run_stream(f"{ws_url}/ws/transcribe/vad?{TINY}&idle_timeout_s=1.5", messages, speed=0))
    assert result.close_code == 4408
    assert result.errors()[0]["code"] == "idle_timeout"
    assert wer(ref, result.finals()[0]["text"]) <= 0.25   # what was said before going quiet is not lost


def test_clients_vanishing_mid_utterance_leave_nothing_behind(ws_url, base_url):
    a, ref = clip("0870")

    async def vanish():
        messages = [platform_message(c) for c in chunks(a[: 3 * 16000])]
        await run_stream(f"{ws_url}/ws/transcribe/vad?{TINY}&partial_interval=0.5", messages, speed=0,
                         close_after=True)

    def stats() -> dict:
        return httpx.get(f"{base_url}/ws/transcribe/sessions").json()

    async def scenario():
        deadline = time.time() + 2 * get_settings().stream_idle_timeout_s
        while stats()["sessions"] and time.time() < deadline:   # earlier tests' sessions finish first
            await asyncio.sleep(0.5)
        before = stats()
        good = asyncio.create_task(stream_platform(ws_url, np.concatenate([a, pause(0.6)]), speed=2.0, query=TINY))
        await asyncio.gather(*[vanish() for _ in range(6)])
        return before, await good

    before, good = run(scenario())
    assert wer(ref, good.finals()[0]["text"]) <= 0.2            # the other session carried on
    # Nothing may stay behind; a session whose client left unnoticed must go by its idle timeout at the latest.
    deadline = time.time() + 2 * get_settings().stream_idle_timeout_s
    while time.time() < deadline:
        after = stats()
        if after["sessions"] == 0 and after["asr_in_flight"] == 0 and after["tasks"] <= before["tasks"] + 2:
            break
        time.sleep(0.5)
    assert after["sessions"] == 0 and after["asr_in_flight"] == 0, after
    assert after["tasks"] <= before["tasks"] + 2, (before["task_kinds"], after["task_kinds"])
