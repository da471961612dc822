"""One WebSocket runner for every live endpoint; wire formats and sessions plug into it.

The runner owns the transport: accept, the bound on open sessions, the idle
timeout, the message size limit, the send lock, close codes, clean-up and
per-family stats. A `Serializer` owns one protocol's wire format (`parse`
client messages into events, `render` session events as messages, or None
for events the protocol does not carry). A `Session` owns what the endpoint
does (live transcription today; TTS and voice chat plug in the same way).

Close codes: 1000 after the client's end of input; 1003 unusable session
options (encoding, rate, language, any invalid value); 1008 protocol violation;
1009 message over `stream_max_frame_bytes`; 1011 internal error; 1013 a
needed deployment is not ready or `max_live_sessions` are open; 4408 idle for
`stream_idle_timeout_s`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Protocol

from fastapi import WebSocket
from pydantic import TypeAdapter, ValidationError

from speechcore.errors import ApiError
from speechcore.sessions.events import EndOfInput, Error, Event, StreamError, error_event
from speechcore.settings import get_settings

log = logging.getLogger("speech.transport")

Send = Callable[[Event], Awaitable[None]]


class Serializer(Protocol):
    family: str
    """Stats key (and error shape) of this protocol."""

    def parse(self, message: Mapping[str, Any]) -> list[Event]: ...
    def render(self, event: Event) -> dict | str | bytes | None: ...


class Session(Protocol):
    async def start(self, query: dict[str, str]) -> None:
        """Options from the query string; StreamError refuses the session."""

    async def handle(self, event: Event) -> None:
        """One parsed client event (may wait: that is the backpressure on the client's socket)."""

    async def finish(self) -> None:
        """Input is over: send every result still due."""

    async def close(self) -> None:
        """The session is over (or the client gone): drop work in flight."""


@dataclass
class FamilyStats:
    open: int = 0
    opened: int = 0
    refused: int = 0
    messages_in: int = 0
    messages_out: int = 0
    closes: Counter = field(default_factory=Counter)


class Stats:
    """What this ingress replica's WebSocket sessions hold now and have done (leak checks, load tests)."""
    families: dict[str, FamilyStats] = {}

    @classmethod
    def of(cls, family: str) -> FamilyStats:
        return cls.families.setdefault(family, FamilyStats())

    @classmethod
    def open_sessions(cls) -> int:
        return sum(f.open for f in cls.families.values())

    @classmethod
    def snapshot(cls) -> dict:
        return {"sessions": cls.open_sessions(), "max_sessions": get_settings().max_live_sessions,
                "families": {name: {**vars(f), "closes": dict(f.closes)} for name, f in cls.families.items()}}


class WebSocketRunner:
    def __init__(self, ws: WebSocket, serializer: Serializer, make_session: Callable[[Send], Session]):
        self.ws, self.serializer, self.make_session = ws, serializer, make_session
        self.settings = get_settings()
        self.stats = Stats.of(serializer.family)
        self.idle_timeout = self.settings.stream_idle_timeout_s
        self._send_lock = asyncio.Lock()
        self._open = False
        self.session: Session | None = None

    async def run(self) -> None:
        await self.ws.accept()
        self._open = True
        if Stats.open_sessions() >= self.settings.max_live_sessions:
            self.stats.refused += 1
            await self._fail(StreamError("too_many_sessions", f"The server holds its limit of "
                                         f"{self.settings.max_live_sessions} live sessions; retry later.", 1013, 503))
            return
        self.stats.open += 1
        self.stats.opened += 1
        try:
            query = dict(self.ws.query_params)
            self.idle_timeout = self._idle_timeout(query)
            self.session = self.make_session(self.send)
            await self.session.start(query)
            await self._receive()
        except StreamError as err:
            await self._fail(err)
        except Exception:  # never a silent drop: tell the client (without internals), then close
            log.exception("live session failed")
            await self._fail(StreamError("internal_error", "Internal error; the session is closed.", 1011, 500))
        finally:
            # Serve cancels this handler when the client vanishes: count the session out before any
            # await, and let its clean-up finish even then (shielded), so no task or slot is left behind.
            self._open = False
            self.stats.open -= 1
            if self.session is not None:
                await asyncio.shield(self.session.close())

    async def send(self, event: Event) -> None:
        """Render and send one event; events the protocol does not carry are skipped."""
        message = self.serializer.render(event)
        if message is None or not self._open:
            return
        async with self._send_lock:
            try:
                if isinstance(message, bytes):
                    await self.ws.send_bytes(message)
                elif isinstance(message, str):
                    await self.ws.send_text(message)
                else:
                    await self.ws.send_json(message)
                self.stats.messages_out += 1
            except Exception:  # the client went away mid-send
                self._open = False

    async def _receive(self) -> None:
        while self._open:
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.idle_timeout)
            except asyncio.TimeoutError:
                if getattr(self.session, "busy", lambda: False)():   # still answering (e.g. a long TTS text)
                    continue
                await self.send(Error("idle_timeout", f"No message for {self.idle_timeout:g} s; closing."))
                await self._finish(4408, "idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                self._open = False
                return
            self.stats.messages_in += 1
            self._check_size(message)
            try:
                for event in self.serializer.parse(message):
                    if isinstance(event, EndOfInput):
                        await self._finish(1000, "end of stream")
                        return
                    await self._session.handle(event)
            except ApiError as err:
                if getattr(err, "close_code", None):
                    raise
                await self.send(error_event(err))

    def _idle_timeout(self, query: dict[str, str]) -> float:
        """A client may shorten (never lengthen) the idle timeout with `?idle_timeout_s=`."""
        if "idle_timeout_s" not in query:
            return self.idle_timeout
        try:
            asked = TypeAdapter(float).validate_python(query["idle_timeout_s"])
        except ValidationError as exc:
            raise StreamError("invalid_config", f"idle_timeout_s: {exc.errors()[0]['msg']}", 1003) from exc
        return min(self.idle_timeout, max(1.0, asked))

    def _check_size(self, message: Mapping[str, Any]) -> None:
        size = len(message.get("text") or message.get("bytes") or b"")
        if size > self.settings.stream_max_frame_bytes:
            raise StreamError("frame_too_large", f"Message of {size} bytes exceeds the limit of "
                              f"{self.settings.stream_max_frame_bytes} bytes; send 100 ms chunks.", 1009, 413)

    @property
    def _session(self) -> Session:
        assert self.session is not None, "the session is made before the first message is read"
        return self.session

    async def _finish(self, code: int, reason: str) -> None:
        await self._session.finish()
        await self._close(code, reason)

    async def _fail(self, err: StreamError) -> None:
        await self.send(err.event())
        await self._close(err.close_code or 1011, err.code)

    async def _close(self, code: int, reason: str) -> None:
        if self._open:
            self._open = False
            self.stats.closes[code] += 1
            try:
                await self.ws.close(code, reason)
            except Exception:
                pass


# -- helpers shared by serializers -----------------------------------------------------------------
def json_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object in a text frame; StreamError (recoverable) otherwise."""
    text = message.get("text")
    if text is None:
        raise StreamError("unsupported_frame", "Expected a JSON text message here, got a binary frame.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreamError("invalid_json", f"Message is not valid JSON: {exc.msg} at position {exc.pos}.") from exc
    if not isinstance(data, dict):
        raise StreamError("invalid_json", "Message must be a JSON object.")
    return data


def base64_audio(value) -> bytes:
    if not isinstance(value, str):
        raise StreamError("invalid_audio_event", "audio_event.audio_base_64 must be a base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StreamError("invalid_base64", f"audio_event.audio_base_64 is not valid base64: {exc}.") from exc
