"""The `/ws/tts` session: synthesis requests in, audio and an end (or error) per request out, in order.

Requests queue and are spoken one after another by a worker task, so the
runner keeps reading the socket while audio streams: a client that goes away
is noticed at once and `close()` cancels the synthesis in progress (the
deployment stream is cancelled between chunks). Each request ends with
exactly one `SpeechEnd` or one `Error`; an error never closes the connection.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from graphs import speech
from graphs.services import Services
from graphs.transport import Send
from speechcore.errors import ApiError
from speechcore.sessions.events import AudioOut, Event, StreamError, error_event

RATE = 24000
FRAME_SAMPLES = RATE // 2          # at most 0.5 s of audio per binary frame
MAX_QUEUED = 8


@dataclass(frozen=True)
class SpeakRequest(Event):
    """One client request: text plus the voice routing fields (validated by the session)."""
    fields: dict[str, Any]


@dataclass(frozen=True)
class SpeechEnd(Event):
    """Every audio frame of one request has been sent."""


def _optional_str(fields: dict[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise StreamError("invalid_request", f"`{key}` must be a string.")
    return value or None


class TTSSession:
    def __init__(self, svc: Services, send: Send, default_language: str = "vi"):
        self.svc, self.send, self.default_language = svc, send, default_language
        self.queue: asyncio.Queue[SpeakRequest] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.pending = 0                 # requests queued or being spoken

    async def start(self, query: dict[str, str]) -> None:
        self.worker = asyncio.create_task(self._run())

    def busy(self) -> bool:
        """Work is in flight: the runner's idle timeout waits (a long text may take minutes)."""
        return self.pending > 0

    async def handle(self, event: Event) -> None:
        if isinstance(event, SpeakRequest):
            if self.pending > MAX_QUEUED:
                raise StreamError("too_many_requests", f"{MAX_QUEUED} requests are already waiting; "
                                                       "wait for an end event before sending more.", status=429)
            self.pending += 1
            self.queue.put_nowait(event)

    async def finish(self) -> None:
        await self.queue.join()

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            request = await self.queue.get()
            try:
                await self._speak(request.fields)
                await self.send(SpeechEnd())
            except ApiError as err:
                await self.send(error_event(err))
            finally:
                self.pending -= 1
                self.queue.task_done()

    async def _speak(self, fields: dict[str, Any]) -> None:
        text = fields.get("target_text")
        if not isinstance(text, str):
            raise StreamError("invalid_request", "`target_text` (a string) is required.")
        speaker_id, collection_id = _optional_str(fields, "speaker_id"), _optional_str(fields, "collection_id")
        language = _optional_str(fields, "language")
        speed = fields.get("speed", 1.0)
        if not isinstance(speed, (int, float)) or isinstance(speed, bool):
            raise StreamError("invalid_request", "`speed` must be a number.")
        speech.checked_text(text, param="target_text")
        if collection_id and not language:
            language = self.default_language
        voice = await speech.resolve_voice(self.svc, speaker_id=speaker_id, collection_id=collection_id,
                                           language=language)
        async for chunk in speech.stream_speech(self.svc, text, voice, float(speed), RATE, language,
                                                param="target_text"):
            for start in range(0, chunk.audio.size, FRAME_SAMPLES):
                await self.send(AudioOut(chunk.audio[start:start + FRAME_SAMPLES], RATE))
