"""A Recognizer over an external ASR speaking our `/ws/transcribe/vad` protocol (the document's
external-ASR server).

Audio goes out as `{"audio_event": {"audio_base_64": <int16 16 kHz>}}` messages
after a `config` message (language and turn options); the server's
`{"type": "transcript", "text", "is_final"}` messages come back as `Partial`
and `Final` events, and its errors as `Error(source="asr")`. The protocol has
no speech-start message, so a turn's first transcript is its `SpeechStarted`
(barge-in then waits `barge_in_min_ms` of audio more) and its final ends it
(`TurnEnded`, then `Final`). It has no commit either: the external server
ends turns by its own silence detection. Language routing uses the text's
`[xx]` prefix (the protocol carries no language).

Unreachable or lost: one `Error` (source asr), then audio is dropped and the
conversation goes on (text input still works).
"""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, Awaitable, Callable

import numpy as np
from websockets.asyncio.client import ClientConnection

from speechcore.audio import SAMPLE_RATE, float_to_pcm16
from speechcore.bridges.common import checked_url, open_ws
from speechcore.errors import ApiError
from speechcore.schemas import Segment, Transcript
from speechcore.sessions.events import Error, Event, Final, Partial, SpeechStarted, TurnEnded

Emit = Callable[[Event], Awaitable[None]]
FINISH_TIMEOUT_S = 30.0


class WebSocketASR:
    def __init__(self, url: str, emit: Emit, config: dict[str, Any] | None = None):
        self.url = checked_url(url, ("ws", "wss"), "asr_ws_url")
        self._emit, self._config = emit, {k: v for k, v in (config or {}).items() if v is not None}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failed = False
        self._closing = False
        self._sent = 0                      # samples sent
        self._turn = 0
        self._turn_start: int | None = None  # sample where the open turn's first transcript arrived

    @property
    def position(self) -> int:
        return self._sent

    async def feed(self, audio: np.ndarray) -> None:
        ws = await self._connection()
        self._sent += audio.size
        if ws is None:
            return
        message = {"audio_event": {"audio_base_64": base64.b64encode(float_to_pcm16(audio)).decode()}}
        try:
            await ws.send(json.dumps(message))
        except Exception:
            await self._lost("closed the connection")

    async def commit(self) -> None:
        """The protocol has no commit: the external server ends turns by its own silence detection."""

    async def finish(self) -> None:
        if self._ws is not None and self._reader is not None:
            self._closing = True
            try:
                await self._ws.send(json.dumps({"type": "end"}))
                await asyncio.wait_for(asyncio.shield(self._reader), FINISH_TIMEOUT_S)
            except Exception:
                pass

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()

    async def _connection(self) -> ClientConnection | None:
        if self._ws is None and not self._failed:
            try:
                self._ws = await open_ws(self.url, "asr")
                await self._ws.send(json.dumps({"type": "config", **self._config}))
            except ApiError as err:
                self._failed = True
                await self._emit(_asr_error(err.code, f"{err.message} Speech is not transcribed; text input "
                                            "still works."))
                return None
            self._reader = asyncio.ensure_future(self._read(self._ws))
        return self._ws

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    await self._on_message(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            pass
        if not self._closing:
            await self._lost("closed the connection")

    async def _on_message(self, message: str) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if data.get("type") == "error":
            await self._emit(_asr_error(str(data.get("code") or "asr_error"),
                                        f"External ASR: {str(data.get('message'))[:300]}"))
        elif data.get("type") == "transcript" and isinstance(data.get("text"), str):
            await self._on_transcript(data["text"], bool(data.get("is_final")))

    async def _on_transcript(self, text: str, final: bool) -> None:
        if self._turn_start is None:
            self._turn_start = self._sent
            await self._emit(SpeechStarted(self._turn, self._sent, self._sent))
        start_s, end_s = self._turn_start / SAMPLE_RATE, self._sent / SAMPLE_RATE
        transcript = Transcript(text=text, language="", language_probability=0.0, duration=end_s - start_s,
                                segments=[Segment(0, 0.0, end_s - start_s, text)])
        if not final:
            await self._emit(Partial(self._turn, transcript, start_s, end_s))
            return
        turn, self._turn, self._turn_start = self._turn, self._turn + 1, None
        await self._emit(TurnEnded(turn, self._sent, reason="silence"))
        await self._emit(Final(turn, transcript, start_s, end_s))

    async def _lost(self, what: str) -> None:
        if not self._failed and not self._closing:
            self._failed = True
            await self._emit(_asr_error("asr_unreachable", f"The external ASR at {self.url} {what}; speech is no "
                                        "longer transcribed (text input still works)."))


def _asr_error(code: str, message: str) -> Error:
    return Error(code, message, source="asr")


