"""`WS /ws/voice-chat` over the running app: real speech in, the server's ASR, LLM and TTS, speech out.

Speech out is checked by transcribing it back with the server's own ASR. The
bridges are exercised twice: pointed at this server's own endpoints
(/ws/transcribe/vad, /ws/tts, /v1/chat/completions) and at a small,
independent server written here (FastAPI + uvicorn in a thread) that records
what it receives. Most sessions set a long `playback_lead_ms` so the agent's
audio is sent as fast as it is made; the barge-in test keeps real-time pacing.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
import websockets
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse

from speechcore.audio import SAMPLE_RATE, decode_audio, float_to_pcm16, wav_bytes
from speechcore.textmetrics import wer
from tests.speech import best_error

QUESTION = Path("fixtures/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
QUESTION_TEXT = "he was not an ill disposed young man"
FAST = {"type": "config", "language": "en", "max_tokens": 30, "playback_lead_ms": 10000,
        "system_prompt": "You are a friendly assistant. Answer in one short sentence."}


@pytest.fixture(scope="module")
def ws_url(base_url) -> str:
    return base_url.replace("http://", "ws://")


@pytest.fixture(scope="module")
def question() -> np.ndarray:
    return decode_audio(QUESTION.open("rb"), SAMPLE_RATE, 60)


@pytest.fixture(scope="module")
def llm_model(base_url) -> str:
    return next(m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"] if "smollm" in m["id"])


def audio_message(audio: np.ndarray) -> str:
    import base64
    return json.dumps({"audio_event": {"audio_base_64": base64.b64encode(float_to_pcm16(audio)).decode()}})


class Chat:
    """A client that keeps every message (JSON as dicts, audio as bytes) with its arrival time."""

    def __init__(self, ws):
        self.ws = ws
        self.messages: list[tuple[float, dict | bytes]] = []

    async def until(self, kind: str, timeout: float = 120, **match) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.monotonic()))
            item = msg if isinstance(msg, bytes) else json.loads(msg)
            self.messages.append((time.monotonic(), item))
            if isinstance(item, dict) and item.get("type") == kind and all(item.get(k) == v for k, v in match.items()):
                return item

    async def quiet(self, seconds: float = 3.0, timeout: float = 120) -> None:
        """Receive until nothing has come for `seconds` (the agent's audio is all sent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await asyncio.wait_for(self.ws.recv(), seconds)
            except asyncio.TimeoutError:
                return
            self.messages.append((time.monotonic(), msg if isinstance(msg, bytes) else json.loads(msg)))

    async def say(self, audio: np.ndarray, realtime: bool = False, chunk_s: float = 0.1) -> None:
        step = int(chunk_s * SAMPLE_RATE)
        for i in range(0, audio.size, step):
            await self.ws.send(audio_message(audio[i:i + step]))
            await asyncio.sleep(chunk_s if realtime else 0.005)

    def of(self, kind: str) -> list[dict]:
        return [m for _, m in self.messages if isinstance(m, dict) and m.get("type") == kind]

    def audio(self) -> np.ndarray:
        data = b"".join(m for _, m in self.messages if isinstance(m, bytes))
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768

    def text(self) -> str:
        return "".join(m["text"] for m in self.of("agent_text"))


async def open_chat(ws_url: str, config: dict, query: str = "") -> tuple[Chat, object]:
    ws = await websockets.connect(f"{ws_url}/ws/voice-chat{query}", max_size=None)
    chat = Chat(ws)
    await ws.send(json.dumps(config))
    await chat.until("ready", timeout=30)
    return chat, ws


async def spoken_turn(ws_url: str, config: dict, audio: np.ndarray) -> Chat:
    """One session: `audio` sent, the answer received to its last audio frame."""
    chat, ws = await open_chat(ws_url, config)
    async with ws:
        await chat.say(audio)
        await chat.until("agent_end")
        await chat.quiet()
    return chat


def transcribe(base_url: str, audio: np.ndarray, rate: int) -> str:
    r = httpx.post(f"{base_url}/v1/speech/transcribe", files={"audio": ("a.wav", wav_bytes(audio, rate))},
                   data={"language": "en"}, timeout=120)
    return r.json()["text"]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


# -- the whole loop on the server's own models ----------------------------------------------------------
def test_spoken_question_gets_transcript_streamed_answer_and_speech(base_url, ws_url, question):
    def turn() -> float:
        chat = asyncio.run(spoken_turn(ws_url, FAST, np.concatenate([question, silence(1.0)])))
        finals = [m["text"] for m in chat.of("transcript") if m["is_final"]]
        assert len(finals) == 1 and wer(QUESTION_TEXT, finals[0]) <= 0.2
        kinds = [m["type"] if isinstance(m, dict) else "audio" for _, m in chat.messages]
        assert kinds.index("thinking") < kinds.index("agent_text") < kinds.index("agent_end")
        assert len(chat.of("agent_text")) >= 3                        # streamed piece by piece
        answer = chat.text()
        assert len(answer.split()) >= 3
        assert {m["step"] for m in chat.of("latency")} >= {"asr", "llm", "tts_first", "total"}
        assert all(m["value"].endswith("ms") for m in chat.of("latency"))
        audio = chat.audio()
        assert audio.size / 24000 > 0.5
        return wer(answer, transcribe(base_url, audio, 24000))
    assert best_error(turn, 0.35) <= 0.35     # the speech says the answer (Piper varies: see best_error)


def test_text_input_and_a_bounded_proactive_followup(ws_url):
    async def go():
        chat, ws = await open_chat(ws_url, {**FAST, "followup_after_s": 1.0, "followup_max": 1})
        async with ws:
            await ws.send(json.dumps({"type": "text_input", "text": "Hello! What is your name?"}))
            await chat.until("agent_end")
            await chat.until("thinking", timeout=60, followup=True)
            await chat.until("agent_end")
            await chat.quiet(4.0)
        return chat
    chat = asyncio.run(go())
    assert not [m for m in chat.of("transcript")]                  # text input bypasses the ASR
    assert len(chat.of("thinking")) == 2 and len(chat.of("agent_end")) == 2   # one follow-up, no second


STORY = ("Once upon a time, a small dragon lived in a cave by the sea. " * 12).split(" ")


def test_barge_in_stops_the_agents_audio_and_the_new_turn_is_answered(ws_url, question, fake):
    """A long answer (the independent chat server's), spoken by the server's TTS in real time; the user talks."""
    fake.reset([w + " " for w in STORY])
    config = {**FAST, "playback_lead_ms": 300, "llm_base_url": f"http://127.0.0.1:{fake.port}/v1"}

    async def go():
        chat, ws = await open_chat(ws_url, config)
        async with ws:
            await ws.send(json.dumps({"type": "text_input", "text": "Tell me a long story about a dragon."}))
            while not any(isinstance(m, bytes) for _, m in chat.messages):
                await _one(chat)
            await asyncio.sleep(1.5)
            talk = asyncio.ensure_future(chat.say(np.concatenate([question, silence(1.0)]), realtime=True))
            try:
                interrupted = await chat.until("interrupted", timeout=30)
                fake.answer = ["Okay."]
                await talk
                await chat.until("thinking", timeout=60)
                await chat.until("agent_end", timeout=120)
                await chat.quiet()
            except Exception as exc:
                kinds = ["audio" if isinstance(m, bytes) else m.get("type") for _, m in chat.messages]
                raise AssertionError(f"{exc!r}: {kinds}") from exc
        return chat, interrupted
    chat, interrupted = asyncio.run(go())
    assert len(chat.of("agent_end")) == 2 and len(chat.of("interrupted")) == 1
    heard = interrupted["heard"]
    story = "".join(m["text"] for m in chat.of("agent_text"))
    assert heard and story.strip().startswith(heard)                  # the history keeps what was played
    assert len(heard.split()) < len(STORY) / 2
    # nothing of the first answer after the interruption: the audio that follows belongs to the new turn
    kinds = ["audio" if isinstance(m, bytes) else m["type"] for _, m in chat.messages]
    i = kinds.index("interrupted")
    assert "audio" not in kinds[i:kinds.index("thinking", i)]
    assert wer(QUESTION_TEXT, [m["text"] for m in chat.of("transcript") if m["is_final"]][0]) <= 0.2
    user = fake.chat_bodies[-1]["messages"]
    assert user[-2] == {"role": "assistant", "content": heard}


async def _one(chat: Chat) -> None:
    msg = await asyncio.wait_for(chat.ws.recv(), 120)
    chat.messages.append((time.monotonic(), msg if isinstance(msg, bytes) else json.loads(msg)))


def test_idle_session_gets_disconnect_and_closes(ws_url):
    async def go():
        chat, ws = await open_chat(ws_url, FAST, query="?idle_timeout_s=1")
        async with ws:
            message = await chat.until("disconnect", timeout=30)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        return message, closed.value.rcvd.code
    message, code = asyncio.run(go())
    assert message["reason"] == "timeout" and code == 4408


def test_protocol_errors_are_clear_and_bounded(ws_url):
    async def refused(message: dict) -> tuple[dict, int]:
        """The first message's answer, and the code the server then closes with."""
        async with websockets.connect(f"{ws_url}/ws/voice-chat") as ws:
            await ws.send(json.dumps(message))
            answer = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return answer, closed.value.rcvd.code

    async def go():
        out = {}
        out["first"], out["first_code"] = await refused({"type": "text_input", "text": "hi"})  # config first
        out["speaker"], out["speaker_code"] = await refused({**FAST, "speaker_id": str(uuid.uuid4())})
        out["url"], out["url_code"] = await refused({**FAST, "llm_base_url": "file:///etc/passwd"})
        out["speculate"], out["speculate_code"] = await refused({**FAST, "speculate_ms": -5})
        out["read_ahead"], out["read_ahead_code"] = await refused({**FAST, "read_ahead": "sometimes"})
        chat, ws = await open_chat(ws_url, FAST)
        async with ws:
            await ws.send(json.dumps({"type": "text_input", "text": "x" * 5000}))
            out["long"] = await chat.until("error")
            await ws.send(json.dumps({"type": "bogus"}))
            out["bogus"] = await chat.until("error")
            await ws.send(json.dumps({"type": "text_input", "text": "Say yes."}))
            await chat.until("agent_end")                                     # still alive
        return out
    out = asyncio.run(go())
    assert out["first"]["code"] == "config_required" and out["first_code"] == 1008
    assert out["speaker"]["code"] == "speaker_not_found" and out["speaker_code"] == 1003
    assert out["url"]["code"] == "invalid_url" and "llm_base_url" in out["url"]["message"]
    assert out["long"]["code"] == "text_too_long" and out["bogus"]["code"] == "unknown_message"
    assert out["speculate"]["type"] == "error" and "speculate_ms" in out["speculate"]["message"]
    assert out["speculate_code"] == out["read_ahead_code"] == out["url_code"] == 1003
    assert out["read_ahead"]["type"] == "error" and "read_ahead" in out["read_ahead"]["message"]


def test_disconnect_mid_answer_leaves_no_task_behind(base_url, ws_url):
    def ours() -> tuple[int, dict]:
        """Open voice chats, and unfinished session tasks by kind (closing ones take a moment under load)."""
        stats = httpx.get(f"{base_url}/ws/transcribe/sessions").json()
        kinds = {k: n for k, n in stats["task_kinds"].items()
                 if "Conversation" in k or "VoiceChat" in k or "Live" in k}
        return stats["families"].get("voice_chat", {}).get("open", 0), kinds

    async def go():
        chat, ws = await open_chat(ws_url, {**FAST, "playback_lead_ms": 200, "max_tokens": 100})
        await ws.send(json.dumps({"type": "text_input", "text": "Tell me a long story."}))
        while not any(isinstance(m, bytes) for _, m in chat.messages):
            await _one(chat)
        await ws.close()
    _, before = ours()        # an earlier test's session may still be closing: it is not this test's
    asyncio.run(go())
    for _ in range(150):
        still_open, kinds = ours()
        grown = {k: n for k, n in kinds.items() if n > before.get(k, 0)}
        if still_open == 0 and not grown:
            break
        time.sleep(0.2)
    assert still_open == 0
    assert not grown, (before, kinds)


# -- bridges ------------------------------------------------------------------------------------------------
def test_bridges_pointed_at_this_servers_own_endpoints(base_url, ws_url, question, llm_model):
    config = {**FAST, "asr_ws_url": f"{ws_url}/ws/transcribe/vad", "tts_ws_url": f"{ws_url}/ws/tts",
              "llm_base_url": f"{base_url}/v1", "llm_model": llm_model}

    def turn() -> float:
        chat = asyncio.run(spoken_turn(ws_url, config, np.concatenate([question, silence(1.5)])))
        assert not chat.of("error")
        finals = [m["text"] for m in chat.of("transcript") if m["is_final"]]
        assert len(finals) == 1 and wer(QUESTION_TEXT, finals[0]) <= 0.2
        assert len(chat.text().split()) >= 3
        return wer(chat.text(), transcribe(base_url, chat.audio(), 24000))
    assert best_error(turn, 0.35) <= 0.35


class FakeServices:
    """An independent ASR (/asr, our /ws/transcribe/vad protocol), TTS (/tts, /ws/tts protocol) and
    OpenAI-compatible chat server (/v1/chat/completions), recording what they receive."""

    def __init__(self) -> None:
        self.asr_configs: list[dict] = []
        self.asr_samples = 0
        self.tts_requests: list[dict] = []
        self.chat_bodies: list[dict] = []
        self.answer: list[str] = []
        app = FastAPI()
        app.websocket("/asr")(self.asr)
        app.websocket("/tts")(self.tts)
        app.post("/v1/chat/completions")(self.chat)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.05)

    def reset(self, answer: list[str]) -> None:
        self.asr_configs, self.tts_requests, self.chat_bodies, self.answer = [], [], [], answer
        self.asr_samples = 0

    async def asr(self, ws: WebSocket) -> None:
        await ws.accept()
        sent = samples = 0
        while True:
            data = json.loads(await ws.receive_text())
            if data.get("type") == "config":
                self.asr_configs.append(data)
            elif data.get("type") == "end":
                await ws.close()
                return
            elif "audio_event" in data:
                n = len(data["audio_event"]["audio_base_64"]) * 3 // 8
                samples += n
                self.asr_samples += n
                if samples >= SAMPLE_RATE and sent == 0:
                    sent = 1
                    await ws.send_json({"type": "transcript", "text": "[fr] Bonjour", "is_final": False})
                if samples >= 2 * SAMPLE_RATE and sent == 1:
                    sent = 2
                    await ws.send_json({"type": "transcript", "text": "[fr] Bonjour, quelle heure est-il ?",
                                        "is_final": True})

    async def tts(self, ws: WebSocket) -> None:
        await ws.accept()
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(6000) / 24000)).astype(np.float32)
        while True:
            request = json.loads(await ws.receive_text())
            self.tts_requests.append(request)
            await ws.send_bytes(float_to_pcm16(tone))
            await ws.send_bytes(float_to_pcm16(tone))
            await ws.send_json({"type": "end"})

    async def chat(self, request: Request) -> StreamingResponse:
        self.chat_bodies.append(await request.json())

        async def events():
            for piece in self.answer:
                await asyncio.sleep(0.01)
                chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def fake():
    services = FakeServices()
    yield services
    services.server.should_exit = True


def test_bridges_pointed_at_an_independent_server_with_language_routing(ws_url, fake):
    fake.reset(["Il est", " midi."])
    collection = str(uuid.uuid4())
    url = f"127.0.0.1:{fake.port}"
    config = {**FAST, "asr_ws_url": f"ws://{url}/asr", "tts_ws_url": f"ws://{url}/tts",
              "llm_base_url": f"http://{url}/v1", "llm_model": "test-model", "collection_id": collection}
    chat = asyncio.run(spoken_turn(ws_url, config, silence(2.5)))
    assert [(m["text"], m["is_final"]) for m in chat.of("transcript")] == [
        ("[fr] Bonjour", False), ("[fr] Bonjour, quelle heure est-il ?", True)]
    assert chat.text() == "Il est midi." and chat.audio().size == 12000          # 0.5 s at 24 kHz
    assert fake.asr_configs[0]["language"] == "en" and fake.asr_samples == int(2.5 * SAMPLE_RATE)
    body = fake.chat_bodies[0]
    assert body["model"] == "test-model" and body["stream"] is True and body["max_tokens"] == 30
    assert "French" in body["messages"][0]["content"]                            # told the turn's language
    assert body["messages"][-1] == {"role": "user", "content": "Bonjour, quelle heure est-il ?"}
    assert fake.tts_requests == [{"target_text": "Il est midi.", "language": "fr", "collection_id": collection}]


def test_unreachable_services_are_errors_with_their_source_and_the_session_survives(ws_url):
    dead = "127.0.0.1:9"

    async def go():
        out = {}
        config = {**FAST, "asr_ws_url": f"ws://{dead}/asr", "llm_base_url": f"http://{dead}/v1"}
        chat, ws = await open_chat(ws_url, config)
        async with ws:
            await chat.say(silence(0.3))
            out["asr"] = await chat.until("error", timeout=30)
            for _ in range(2):
                await ws.send(json.dumps({"type": "text_input", "text": "Hello?"}))
                out.setdefault("llm", []).append(await chat.until("error", timeout=30))
                await chat.until("agent_end")
        chat, ws = await open_chat(ws_url, {**FAST, "tts_ws_url": f"ws://{dead}/tts"})
        async with ws:
            await ws.send(json.dumps({"type": "text_input", "text": "Say hello."}))
            out["tts"] = await chat.until("error", timeout=60)
            if not chat.of("agent_end"):                  # the text may end before synthesis fails
                await chat.until("agent_end")
            out["tts_text"] = chat.text()
        return out
    out = asyncio.run(go())
    assert out["asr"]["source"] == "asr" and out["asr"]["code"] == "asr_unreachable"
    assert [e["source"] for e in out["llm"]] == ["llm", "llm"] and out["llm"][0]["code"] == "llm_unreachable"
    assert out["tts"]["source"] == "tts" and out["tts"]["code"] == "tts_unreachable"
    assert len(out["tts_text"].split()) >= 1                                     # the answer still came as text
