"""A Synthesizer over an external TTS speaking our `/ws/tts` protocol (seeds/voice-platform-...md).

One connection per conversation, one request at a time on it: `{"target_text",
"language", "speaker_id"?, "collection_id"?}` out; binary PCM int16 24 kHz
frames back, then `{"type": "end"}` (or `{"type": "error"}`). A request cut
short (a barge-in) closes the connection, so audio still on its way cannot
leak into the next answer; the next request reconnects.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from websockets.asyncio.client import ClientConnection

from speechcore.audio import pcm_to_float
from speechcore.bridges.common import checked_url, open_ws
from speechcore.errors import ApiError
from speechcore.schemas import Speech

RATE = 24000


class WebSocketTTS:
    def __init__(self, url: str, collection_id: str | None = None, timeout_s: float = 60.0):
        self.url = checked_url(url, ("ws", "wss"), "tts_ws_url")
        self.collection_id, self.timeout_s = collection_id, timeout_s
        self._ws: ClientConnection | None = None
        self._lock = asyncio.Lock()

    async def stream(self, text: str, voice: str | None, language: str | None) -> AsyncIterator[Speech]:
        request: dict[str, Any] = {"target_text": text, "language": language}
        if voice:
            request["speaker_id"] = voice
        if self.collection_id:
            request["collection_id"] = self.collection_id
        async with self._lock:
            if self._ws is None:
                self._ws = await open_ws(self.url, "tts")
            ws, done = self._ws, False
            try:
                await ws.send(json.dumps(request))
                while True:
                    message = await asyncio.wait_for(ws.recv(), self.timeout_s)
                    if isinstance(message, bytes):
                        yield Speech(pcm_to_float(message, "pcm16", 1), RATE)
                        continue
                    done = _answer_done(message)
                    return
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                raise ApiError(502, "tts_unreachable", f"The external TTS at {self.url} stopped answering "
                               f"({type(exc).__name__}).") from exc
            except Exception as exc:
                if isinstance(exc, ApiError):
                    raise
                raise ApiError(502, "tts_unreachable", f"The external TTS at {self.url} closed the connection "
                               f"({type(exc).__name__}).") from exc
            finally:
                if not done:
                    await self.close()

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()


def _answer_done(message: str) -> bool:
    """True at the request's end event; ApiError with the server's message at its error event."""
    try:
        data = json.loads(message)
    except ValueError as exc:
        raise ApiError(502, "tts_error", "The external TTS sent a message that is not JSON.") from exc
    if isinstance(data, dict) and data.get("type") == "error":
        raise ApiError(502, "tts_error", f"The external TTS refused the text: {str(data.get('message'))[:300]}")
    if isinstance(data, dict) and data.get("type") == "end":
        return True
    raise ApiError(502, "tts_error", "The external TTS sent an unexpected message.")
