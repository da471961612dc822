"""The voice layer under Ray Serve: real WebSocket clients on /v1/voice/ws with real recorded speech,
the real ASR, LLM and TTS deployments, and a small external chat backend started here (real HTTP)."""
from __future__ import annotations

import asyncio
import base64
import json
import os

import numpy as np
import pytest
import websockets

from speechcore.audio import decode_audio, float_to_pcm16, resample
from speechcore.textmetrics import wer
from tests.speech import cards, librivox
from tests.voice_backend import BACKEND_KEY, Backend
from tests.voice_backend import start as start_backend

# The app under test is started once per test session with this environment (Ray workers inherit it).
os.environ["SPEECH_BACKEND_BASE_URL"] = start_backend()
os.environ["SPEECH_BACKEND_API_KEY"] = BACKEND_KEY
os.environ["SPEECH_ALLOW_FRONTEND_BACKEND_AUTH"] = "true"

CUSTOM = {"provider": "custom", "api_key": "llm-key", "model": "echo-1", "base_url": "https://llm.invalid",
          "system_prompt": "Repeat."}


def clip(name: str) -> tuple[np.ndarray, str]:
    path, ref = next((p, r) for p, r in librivox().items() if p.stem.endswith(name))
    return decode_audio(path.read_bytes()), ref


def pause(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


def configure(stt: dict | None = None, tts: dict | None = None, backend: dict | None = None) -> str:
    return json.dumps({"type": "session.configure", "session_id": "t-1", "stt": {"language_code": "en", **(stt or {})},
                       "tts": tts or {}, "backend": backend or {}})


@pytest.fixture(scope="module")
def ws_url(base_url) -> str:
    return base_url.replace("http://", "ws://") + "/v1/voice/ws"


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []

    async def send(self, message: str | bytes | dict) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def until(self, kind: str, count: int = 1, timeout: float = 180) -> list[dict]:
        """Every event up to and including the `count`-th event of type `kind`."""
        seen: list[dict] = []
        async with asyncio.timeout(timeout):
            while sum(e["type"] == kind for e in seen) < count:
                seen.append(json.loads(await self.ws.recv()))
        self.events += seen
        return seen

    async def window(self, seconds: float) -> list[dict]:
        """Whatever arrives within `seconds` (to show that something did not happen)."""
        seen: list[dict] = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    seen.append(json.loads(await self.ws.recv()))
        except TimeoutError:
            pass
        self.events += seen
        return seen

    async def close_and_collect(self) -> None:
        """session.close: the open turn is flushed; read until the server closes."""
        await self.send({"type": "session.close"})
        try:
            async for message in self.ws:
                self.events.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass

    async def stream(self, audio: np.ndarray, rate: int = 16000, as_json: bool = False, first: dict | None = None):
        """Audio in 100 ms chunks at 4x real time, binary frames or audio.append events."""
        pcm = float_to_pcm16(resample(audio, 16000, rate) if rate != 16000 else audio)
        step = rate // 10 * 2
        for i, at in enumerate(range(0, len(pcm), step)):
            data = pcm[at:at + step]
            if as_json:
                msg = {"type": "audio.append", "audio": base64.b64encode(data).decode(), "sample_rate": rate}
                await self.send({**msg, **(first or {})} if i == 0 else msg)
            else:
                await self.send(data)
            await asyncio.sleep(0.025)


async def session(ws_url: str, config: str, **connect) -> Client:
    ws = await websockets.connect(ws_url, max_size=None, open_timeout=60, **connect)
    client = Client(ws)
    assert (await client.until("session.ready"))[0]["message"] == "Send session.configure to begin."
    await client.send(config)
    return client


def of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def pcm_seconds(chunks: list[dict], rate: int) -> float:
    return sum(len(base64.b64decode(c["audio"])) for c in chunks) / 2 / rate


def run(coro):
    return asyncio.run(coro)


# -- text prompt, local LLM, streamed audio ------------------------------------------------------------
def test_text_prompt_gets_an_answer_with_metadata_and_streamed_pcm(ws_url):
    async def scenario():
        c = await session(ws_url, configure(tts={"output_format": "pcm_16000", "model_id": "eleven_flash_v2_5",
                                                 "voice_settings": {"stability": 0.4, "similarity_boost": 0.8}}))
        configured, = await c.until("session.configured")
        started, = of(await c.until("stt.session_started"), "stt.session_started")
        await c.send({"type": "text.prompt", "text": "What is the capital of France?"})
        events = await c.until("assistant.audio.end")
        await c.ws.close()
        return configured, started, events

    configured, started, events = run(scenario())
    assert configured["session_id"] == "t-1"
    assert configured["tts"]["model_id"] == "piper-joe" and configured["tts"]["requested_model_id"] == "eleven_flash_v2_5"
    assert configured["tts"]["voice_settings"] == {"speed": 1.0, "stability": "not_applicable",
                                                   "similarity_boost": "not_applicable"}
    assert configured["backend"] == {"type": "local", "model": "smollm2-135m"}
    assert started["config"]["model_id"] == "whisper-base" and started["config"]["language_code"] == "en"
    assert started["config"]["commit_strategy"] == "vad" and started["session_id"]
    kinds = [e["type"] for e in events]
    assert kinds.index("assistant.started") < kinds.index("assistant.audio.start") < kinds.index("assistant.audio.end")
    assert of(events, "assistant.started")[0]["text"] == "What is the capital of France?"
    message, = of(events, "assistant.message")
    assert message["text"].strip() and message["metadata"]["model"] == "smollm2-135m"
    assert message["metadata"]["completion_tokens"] > 0 and message["metadata"]["prompt_tokens"] > 10
    assert message["metadata"]["timings_ms"]["llm"] > 0
    chunks = of(events, "assistant.audio.chunk")
    end, = of(events, "assistant.audio.end")
    assert [c["chunk_index"] for c in chunks] == list(range(1, len(chunks) + 1)) == list(range(1, end["chunk_count"] + 1))
    assert {c["output_format"] for c in chunks} == {"pcm_16000"} and {c["turn_id"] for c in chunks} == {1}
    audio = np.frombuffer(b"".join(base64.b64decode(c["audio"]) for c in chunks), np.int16)
    assert audio.size / 16000 > 0.5 and np.abs(audio).max() > 1000       # real speech, not silence


def test_mp3_output_is_one_assistant_audio_blob(ws_url):
    async def scenario():
        c = await session(ws_url, configure(tts={"output_format": "mp3_22050_32"}, backend=CUSTOM))
        await c.until("stt.session_started")
        await c.send({"type": "text.prompt", "text": "Good morning."})
        events = await c.until("assistant.audio")
        await c.ws.close()
        return events

    events = run(scenario())
    assert not of(events, "assistant.audio.chunk")
    blob, = of(events, "assistant.audio")
    assert blob["content_type"] == "audio/mpeg" and blob["output_format"] == "mp3_22050_32"
    audio = decode_audio(base64.b64decode(blob["audio"]))
    assert audio.size / 16000 > 1.0 and np.abs(audio).max() > 0.05


# -- speech in ---------------------------------------------------------------------------------------------
def test_streamed_speech_is_committed_and_answered(ws_url):
    audio, ref = clip("0880")

    async def scenario():
        c = await session(ws_url, configure(tts={"output_format": "pcm_24000"}))
        await c.until("stt.session_started")
        await c.stream(np.concatenate([pause(0.5), audio, pause(1.5)]))
        events = await c.until("assistant.audio.end")
        await c.ws.close()
        return events

    events = run(scenario())
    committed, = of(events, "transcript.committed")
    assert wer(ref, committed["text"]) <= 0.25 and committed["language"] == "en" and "words" not in committed
    started, = of(events, "assistant.started")
    assert started["text"] == committed["text"].strip()
    assert of(events, "assistant.message")[0]["metadata"]["timings_ms"]["asr"] >= 0
    assert {c["output_format"] for c in of(events, "assistant.audio.chunk")} == {"pcm_24000"}


def test_8k_audio_append_with_timestamps_and_tiny_model(ws_url):
    audio, ref = clip("0930")

    async def scenario():
        c = await session(ws_url, configure(stt={"audio_format": "pcm_8000", "include_timestamps": True,
                                                 "model_id": "whisper-tiny.en"}, backend=CUSTOM))
        started, = of(await c.until("stt.session_started"), "stt.session_started")
        await c.stream(np.concatenate([pause(0.3), audio, pause(1.2)]), rate=8000, as_json=True,
                       first={"previous_text": "Sense and Sensibility, chapter two."})
        events = await c.until("transcript.committed")
        await c.ws.close()
        return started, events

    started, events = run(scenario())
    assert started["config"]["model_id"] == "whisper-tiny.en" and started["config"]["sample_rate"] == 8000
    committed, = of(events, "transcript.committed")
    assert wer(ref, committed["text"]) < 0.3
    words = committed["words"]
    assert [w["text"].lower().strip(".,") for w in words][-1] == "himself"
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(w["end"] >= w["start"] for w in words)
    assert 0.3 < words[0]["start"] < 1.5                       # stream time: after the 0.3 s lead-in


def test_silence_threshold_decides_how_many_commits(ws_url):
    (a, _), (b, _) = clip("0880"), clip("0930")
    speech = np.concatenate([pause(0.3), a, pause(0.5), b, pause(2.0)])   # about 1 s between the voices

    async def commits(silence_s: float) -> list[str]:
        c = await session(ws_url, configure(stt={"vad_silence_threshold_secs": silence_s}, backend=CUSTOM))
        await c.until("stt.session_started")
        await c.stream(speech)
        await c.close_and_collect()
        return [e["text"] for e in of(c.events, "transcript.committed")]

    assert len(run(commits(0.4))) == 2
    one = run(commits(1.5))
    assert len(one) == 1 and "himself" in one[0].lower()


def test_min_speech_duration_drops_short_turns(ws_url):
    path, _ = next(iter(cards().items()))
    short = decode_audio(path.read_bytes())
    assert short.size / 16000 < 2.0

    async def committed(min_ms: int) -> list[dict]:
        c = await session(ws_url, configure(stt={"min_speech_duration_ms": min_ms}, backend=CUSTOM))
        await c.until("stt.session_started")
        await c.stream(np.concatenate([pause(0.3), short, pause(1.0)]))
        await c.close_and_collect()
        return of(c.events, "transcript.committed")

    assert len(run(committed(200))) == 1
    assert run(committed(2000)) == []


def test_manual_commit_answers_only_on_audio_commit(ws_url):
    audio, ref = clip("0880")

    async def scenario():
        c = await session(ws_url, configure(stt={"commit_strategy": "manual"}, backend=CUSTOM))
        await c.until("stt.session_started")
        await c.stream(np.concatenate([pause(0.3), audio, pause(1.2)]))
        before = await c.until("transcript.committed")
        before += await c.window(2.0)
        await c.send({"type": "audio.commit"})
        after = await c.until("assistant.audio.end")
        await c.ws.close()
        return before, after

    before, after = run(scenario())
    assert not of(before, "assistant.started")
    started, = of(after, "assistant.started")
    assert wer(ref, started["text"]) <= 0.25
    message, = of(after, "assistant.message")
    assert message["text"].startswith("You said")


# -- external backend --------------------------------------------------------------------------------------
def test_custom_backend_registers_once_and_chats_with_history(ws_url):
    Backend.calls.clear()

    async def scenario():
        c = await session(ws_url, configure(backend={**CUSTOM, "model": "history-1"}))
        configured, = await c.until("session.configured")
        for text in ("First question.", "Second question."):
            await c.send({"type": "text.prompt", "text": text})
            await c.until("assistant.audio.end")
        await c.ws.close()
        c2 = await session(ws_url, configure(backend={"registration_id": "reg-history-1"}))
        await c2.until("stt.session_started")
        await c2.ws.close()
        return configured, c.events

    configured, events = run(scenario())
    assert configured["backend"] == {"type": "custom", "registration_id": "reg-history-1"}
    paths = [p for p, _ in Backend.calls]
    assert paths == ["/v1/register", "/v1/chat", "/v1/chat"]
    register, first, second = (b for _, b in Backend.calls)
    assert register == {"provider": "custom", "api_key": "llm-key", "model": "history-1",
                        "base_url": "https://llm.invalid", "system_prompt": "Repeat."}
    assert first["message"] == "First question." and first["history"] == [] and first["session_id"] == "t-1"
    assert second["history"][0] == {"role": "user", "content": "First question."}
    assert second["history"][1]["content"].startswith("You said First question")
    messages = of(events, "assistant.message")
    assert [m["text"] for m in messages] == ["You said First question. Thank you.",
                                             "You said Second question. Thank you."]
    assert messages[1]["metadata"]["turns_seen"] == 2 and messages[1]["metadata"]["backend"] == "custom"


def test_speed_setting_changes_the_speech_rate(ws_url):
    async def seconds(speed: float) -> float:
        c = await session(ws_url, configure(tts={"output_format": "pcm_16000", "voice_settings": {"speed": speed}},
                                            backend=CUSTOM))
        await c.until("stt.session_started")
        await c.send({"type": "text.prompt", "text": "The quick brown fox jumps over the lazy dog."})
        events = await c.until("assistant.audio.end")
        await c.ws.close()
        return pcm_seconds(of(events, "assistant.audio.chunk"), 16000)

    normal, fast = run(seconds(1.0)), run(seconds(2.0))
    assert fast < 0.75 * normal


# -- errors ----------------------------------------------------------------------------------------------
def test_bad_input_gets_error_events_and_the_session_stays_usable(ws_url):
    async def scenario():
        ws = await websockets.connect(ws_url, open_timeout=60)
        c = Client(ws)
        await c.until("session.ready")
        replies = []
        for message in (b"\x00\x01" * 800, "{not json", json.dumps({"type": "dance"}), json.dumps([1]),
                        json.dumps({"type": "text.prompt", "text": "hi"}),
                        configure(tts={"voice_id": "nobody"}), configure(stt={"language_code": "xx"}),
                        configure(stt={"model_id": "whisper-huge"}), configure(tts={"model_id": "tts-9"}),
                        configure(tts={"output_format": "ogg_48000"}),
                        configure(stt={"audio_format": "pcm_8000", "sample_rate": 16000}),
                        configure(stt={"vad_threshold": 2})):
            await c.send(message)
            replies.append((await c.until("error"))[-1])
        await c.send(configure(backend=CUSTOM))
        configured = await c.until("stt.session_started")
        await c.send(json.dumps({"type": "audio.append", "audio": "***"}))
        bad_b64 = (await c.until("error"))[-1]
        await c.send(configure())
        again = (await c.until("error"))[-1]
        await c.send({"type": "text.prompt", "text": "Still there?"})
        answer = await c.until("assistant.message")
        await ws.close()
        return replies, configured, bad_b64, again, answer

    replies, configured, bad_b64, again, answer = run(scenario())
    codes = [r["code"] for r in replies]
    assert codes == ["not_configured", "invalid_json", "unknown_type", "invalid_json", "not_configured",
                     "voice_not_found", "unsupported_language", "model_not_found", "tts_model_not_found",
                     "invalid_config", "invalid_config", "invalid_config"]
    assert all(r["message"] and "Traceback" not in r["message"] for r in replies)
    assert "nobody" in replies[5]["message"] and "output_format" in replies[9]["message"]
    assert of(configured, "session.configured")
    assert bad_b64["code"] == "invalid_audio" and again["code"] == "already_configured"
    assert of(answer, "assistant.message")[0]["text"].startswith("You said Still there")
