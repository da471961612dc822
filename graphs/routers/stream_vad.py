"""Speech platform: `WS /ws/transcribe/vad` (seeds/voice-platform-asr-tts-chat-webrtc.md).

Client: `{"audio_event": {"audio_base_64": <int16 16 kHz mono>}}`, `{"type": "config", ...}`,
`{"type": "end"}`. Server: `{"type": "transcript", "text", "is_final"}`, `{"type": "ssap",
"properties"}`, `{"type": "error", "code", "message"}`. Session options (query or config):
silence_ms, volume_threshold, partial_interval, model, language, ssap, idle_timeout_s (query).
"""
from __future__ import annotations

from typing import Any, Mapping

from fastapi import APIRouter, WebSocket

from graphs.live import LiveTranscription, live_stats
from graphs.routers import services
from graphs.transport import WebSocketRunner, json_message, platform_audio
from speechcore.audio import pcm_to_float
from speechcore.sessions.events import (AudioIn, Configure, EndOfInput, Error, Event, StreamError, Transcription,
                                        VoiceProfile)

router = APIRouter(tags=["live transcription"])


class PlatformSerializer:
    family = "platform"

    def parse(self, message: Mapping[str, Any]) -> list[Event]:
        data = json_message(message)
        if "audio_event" in data:
            return [AudioIn(pcm_to_float(platform_audio(data["audio_event"]), "pcm16", 1))]
        kind = data.get("type")
        if kind == "config":
            if data.get("sample_rate") not in (None, 16000):
                raise StreamError("unsupported_sample_rate", "This endpoint takes int16 mono audio at 16000 Hz "
                                  f"only, not {data['sample_rate']!r} (use /v1/speech/stream for other rates).", 1003)
            return [Configure(data)]
        if kind == "end":
            return [EndOfInput()]
        raise StreamError("unknown_message", f"Unknown message (type {kind!r}); expected audio_event, "
                          "config or end.")

    def render(self, event: Event) -> dict | None:
        if isinstance(event, Transcription):
            return {"type": "transcript", "text": event.transcript.text, "is_final": event.is_final}
        if isinstance(event, VoiceProfile):
            return {"type": "ssap", "properties": event.properties}
        if isinstance(event, Error):
            return {"type": "error", "code": event.code, "message": event.message}
        return None


@router.websocket("/ws/transcribe/vad")
async def transcribe_vad(ws: WebSocket):
    svc = services()
    await WebSocketRunner(ws, PlatformSerializer(),
                          lambda send: LiveTranscription(svc, send, ssap_allowed=True)).run()


@router.get("/ws/transcribe/sessions", summary="Live sessions open on this ingress replica")
async def sessions():
    return live_stats()
