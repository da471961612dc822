"""Request/response WebSocket families for the clients and the load generator: `WS /ws/tts` (text in,
PCM chunks out, several requests per connection) and `WS /ws/voice-chat` (a session of typed events).

Both are async; the sync client runs them through `asyncio.run`. Live transcription's wire formats
are in `clients.live`.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import numpy as np
import websockets

from clients.calls import SpeechError
from clients.live import pcm16

TTS_RATE = 24000
"""`/ws/tts` and voice chat audio: PCM int16 mono at 24 kHz."""


def ws_url(base_url: str, path: str, query: str = "") -> str:
    return base_url.replace("http", "ws", 1) + path + (f"?{query}" if query else "")


def _connect(url: str, headers: dict[str, str]) -> Any:
    return websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=60)


def _error(m: dict[str, Any]) -> SpeechError:
    """An `error` event as the HTTP clients' exception (status 0: it came over a socket)."""
    return SpeechError(0, str(m.get("code", "error")), str(m.get("message", "")))


def tts_request(text: str, speaker_id: str | None = None, collection_id: str | None = None,
                language: str | None = None, speed: float | None = None) -> dict[str, Any]:
    """One `/ws/tts` request: a voice by `speaker_id` (a UUID from `/api/speakers` or a voice name), else the
    `collection_id`'s speaker for `language`, else the best voice for `language`, else the default voice."""
    fields = {"speaker_id": speaker_id, "collection_id": collection_id, "language": language, "speed": speed}
    return {"target_text": text, **{k: v for k, v in fields.items() if v is not None}}


class TtsSocket:
    """One `/ws/tts` connection; requests are answered one after another.

        async with TtsSocket(url) as tts:
            async for pcm in tts.speak("Hello there.", language="en"): ...
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None):
        self.url, self.headers = ws_url(base_url, "/ws/tts"), headers or {}
        self.ws: Any = None

    async def __aenter__(self) -> TtsSocket:
        self.ws = await _connect(self.url, self.headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def speak(self, text: str, **voice: Any) -> AsyncIterator[bytes]:
        """PCM int16 24 kHz chunks of `text` (voice: speaker_id, collection_id, language, speed); an error
        event raises SpeechError (the connection stays usable)."""
        await self.ws.send(json.dumps(tts_request(text, **voice)))
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                yield message
                continue
            m = json.loads(message)
            if m.get("type") == "error":
                raise _error(m)
            if m.get("type") == "end":
                return


@dataclass(frozen=True)
class ChatEvent:
    """A voice chat server message: `kind` is its `type` (ready, transcript, thinking, agent_text, agent_end,
    interrupted, latency, ssap, error, disconnect) or `audio` for a PCM int16 24 kHz frame."""
    kind: str
    text: str = ""
    audio: bytes = b""
    raw: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.perf_counter)
    """When it arrived (perf_counter): voice-to-voice and other latencies are differences of these."""

    @property
    def is_final(self) -> bool:
        return self.kind == "transcript" and bool(self.raw.get("is_final"))

    @property
    def latency_s(self) -> float | None:
        """A `latency` event's value ("142ms") in seconds."""
        value = str(self.raw.get("value", ""))
        return float(value.removesuffix("ms")) / 1000 if self.kind == "latency" and value.endswith("ms") else None


def chat_event(message: str | bytes) -> ChatEvent:
    if isinstance(message, bytes):
        return ChatEvent("audio", audio=message)
    m = json.loads(message)
    return ChatEvent(str(m.get("type", "other")), str(m.get("text", m.get("message", ""))), raw=m)


class VoiceChat:
    """A `/ws/voice-chat` session: the config is sent on entering (it waits for `ready`); then send audio
    (paced) or text and iterate the events until the server closes.

        async with VoiceChat(url, {"language": "en", "max_tokens": 40}) as chat:
            await chat.send_text("What is the capital of France?")
            events = await chat.turn()          # up to agent_end and the answer's audio
    """

    def __init__(self, base_url: str, config: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 query: str = ""):
        self.url, self.headers = ws_url(base_url, "/ws/voice-chat", query), headers or {}
        self.config = {**(config or {}), "type": "config"}
        self.ws: Any = None

    async def __aenter__(self) -> VoiceChat:
        self.ws = await _connect(self.url, self.headers)
        await self.ws.send(json.dumps(self.config))
        first = chat_event(await self.ws.recv())
        if first.kind != "ready":
            await self.ws.close()
            raise _error(first.raw) if first.kind == "error" else SpeechError(0, "no_ready", first.kind)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send_text(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "text_input", "text": text}))

    async def send_audio(self, audio: np.ndarray, speed: float = 1.0, chunk_s: float = 0.1) -> float:
        """Streams float32 16 kHz mono audio as binary PCM frames at `speed` x real time (0: at once);
        returns when the last frame was sent (perf_counter), the start of a voice-to-voice wait."""
        step, start, sent = int(chunk_s * 16000), time.perf_counter(), time.perf_counter()
        for i, at in enumerate(range(0, audio.size, step)):
            if speed > 0:
                await asyncio.sleep(max(0.0, start + i * chunk_s / speed - time.perf_counter()))
            await self.ws.send(pcm16(audio[at:at + step]))
            sent = time.perf_counter()
        return sent

    async def commit(self) -> None:
        await self.ws.send(json.dumps({"type": "commit"}))

    async def end(self) -> None:
        """Asks the server to finish (transcripts still due are sent, then it closes)."""
        await self.ws.send(json.dumps({"type": "end"}))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def receive(self, timeout_s: float | None = None) -> ChatEvent | None:
        """The next event; None once the server has closed or after `timeout_s` without one."""
        try:
            return chat_event(await asyncio.wait_for(self.ws.recv(), timeout_s))
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            return None

    async def events(self) -> AsyncIterator[ChatEvent]:
        while (e := await self.receive()) is not None:
            yield e

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self.events()

    async def turn(self, quiet_s: float = 2.0) -> list[ChatEvent]:
        """The events of one answer: up to `agent_end` (its text is complete), then its remaining audio, which
        the protocol does not mark the end of: until `quiet_s` passes without a message (or a disconnect)."""
        out: list[ChatEvent] = []
        while (e := await self.receive(quiet_s if any(x.kind == "agent_end" for x in out) else None)) is not None:
            out.append(e)
            if e.kind == "disconnect":
                break
        return out


def pcm_array(chunks: list[bytes]) -> np.ndarray:
    """PCM int16 chunks -> float32 samples."""
    return np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float32) / 32768
