"""Speech platform: `WS /ws/voice-chat` (seeds/voice-platform-asr-tts-chat-webrtc.md, "Interactive Voice Chat").

Client: `{"type": "config", ...}` first (-> `{"type": "ready"}`), then
`{"audio_event": {"audio_base_64": <int16 16 kHz mono>}}` (or the same PCM as
a binary frame), `{"type": "text_input", "text"}`, `{"type": "commit"}`
(manual turn end), `{"type": "end"}`. Server: `transcript` (text, is_final),
`thinking`, `agent_text` (one per streamed piece), `agent_end`, binary PCM
int16 24 kHz mono, `interrupted` (barge-in: drop unplayed audio), `ssap`,
`latency` (step, value "142ms"), `error` (source, code, message),
`disconnect` (reason timeout) before an idle close (4408).
"""
from __future__ import annotations

from typing import Any, Mapping

from fastapi import APIRouter, WebSocket

from graphs.routers import services
from graphs.transport import WebSocketRunner, base64_audio, json_message
from graphs.voice_chat import FAMILY, Ready, VoiceChat
from speechcore.audio import float_to_pcm16, pcm_to_float, resample
from speechcore.sessions.events import (AgentEnd, AgentText, AudioIn, AudioOut, Commit, Configure, EndOfInput, Error,
                                        Event, Interrupted, Latency, StreamError, TextIn, Thinking, Transcription,
                                        VoiceProfile)
from speechcore.settings import get_settings

router = APIRouter(tags=["voice chat"])
OUT_RATE = 24000


class VoiceChatSerializer:
    family = FAMILY

    def parse(self, message: Mapping[str, Any]) -> list[Event]:
        if message.get("bytes") is not None:
            return [AudioIn(pcm_to_float(message["bytes"], "pcm16", 1))]
        data = json_message(message)
        if "audio_event" in data:
            event = data["audio_event"]
            if not isinstance(event, dict) or "audio_base_64" not in event:
                raise StreamError("invalid_audio_event", "audio_event must be {\"audio_base_64\": <base64 int16>}.")
            return [AudioIn(pcm_to_float(base64_audio(event["audio_base_64"]), "pcm16", 1))]
        kind = data.get("type")
        if kind == "config":
            return [Configure(data)]
        if kind == "text_input":
            if not isinstance(data.get("text"), str) or not data["text"].strip():
                raise StreamError("invalid_text_input", "text_input needs a non-empty `text` string.")
            return [TextIn(data["text"])]
        if kind == "commit":
            return [Commit()]
        if kind == "end":
            return [EndOfInput()]
        raise StreamError("unknown_message", f"Unknown message (type {kind!r}); expected config, audio_event, "
                          "text_input, commit or end.")

    def render(self, event: Event) -> dict | bytes | None:
        if isinstance(event, AudioOut):
            return float_to_pcm16(resample(event.audio, event.sample_rate, OUT_RATE))
        if isinstance(event, AgentText):
            return {"type": "agent_text", "text": event.text}
        if isinstance(event, Transcription):
            return {"type": "transcript", "text": event.transcript.text, "is_final": event.is_final}
        if isinstance(event, Error):
            return _error(event)
        return _simple(event)


def _simple(event: Event) -> dict | None:
    if isinstance(event, Ready):
        return {"type": "ready"}
    if isinstance(event, Thinking):
        return {"type": "thinking", **({"followup": True} if event.followup else {})}
    if isinstance(event, AgentEnd):
        return {"type": "agent_end", **({"interrupted": True} if event.interrupted else {})}
    if isinstance(event, Interrupted):
        return {"type": "interrupted", "heard": event.heard}
    if isinstance(event, Latency):
        return {"type": "latency", "step": event.step, "value": f"{event.ms:.0f}ms"}
    if isinstance(event, VoiceProfile):
        return {"type": "ssap", "properties": event.properties}
    return None


def _error(event: Error) -> dict:
    if event.code == "idle_timeout":
        return {"type": "disconnect", "reason": "timeout", "message": event.message}
    return {"type": "error", "source": event.source or "session", "code": event.code, "message": event.message}


@router.websocket("/ws/voice-chat")
async def voice_chat(ws: WebSocket):
    svc = services()
    runner = WebSocketRunner(ws, VoiceChatSerializer(), lambda send: VoiceChat(svc, send))
    runner.idle_timeout = get_settings().voice_chat_idle_timeout_s
    await runner.run()
