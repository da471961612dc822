"""Speech gateway: `WS /v1/speech/stream` (seeds/speech-gateway-api.md).

First a config message (`encoding` pcm16 | float32 | opus, `sample_rate` 8000 | 16000 |
44100 | 48000, `channels` 1 | 2; optional model, language, silence_ms, ...), then binary
frames. Opus frames are raw Opus packets, one per message (as WebCodecs or RTP carry
them, no Ogg container). `{"type": "end"}` flushes the last turn and closes.
Results: `{is_final, text, confidence, language, start_ms, end_ms}`, finals with `words`;
errors: `{"error": {"code", "message"}}`.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, ValidationError

from graphs.live import LiveTranscription
from graphs.routers import services
from graphs.transport import WebSocketRunner, json_message
from speechcore.audio import OpusPacketDecoder, StreamResampler, pcm_to_float
from speechcore.formats import gateway_word, ms, transcript_confidence
from speechcore.sessions.events import AudioIn, Configure, EndOfInput, Error, Event, StreamError, Transcription

router = APIRouter(tags=["speech gateway"])


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["config"]
    encoding: Literal["pcm16", "float32", "opus"] = "pcm16"
    sample_rate: Literal[8000, 16000, 44100, 48000] = 16000
    channels: Literal[1, 2] = 1


class GatewaySerializer:
    family = "gateway"

    def __init__(self):
        self.decode = None

    def parse(self, message: Mapping[str, Any]) -> list[Event]:
        if self.decode is None:
            return [self._configure(message)]
        if message.get("bytes") is not None:
            return [AudioIn(self.decode(message["bytes"]))]
        data = json_message(message)
        if data.get("type") == "end":
            return [EndOfInput()]
        if data.get("type") == "config":
            raise StreamError("already_configured", "The stream is already configured; send binary audio frames.")
        raise StreamError("unknown_message", "After the config message send binary audio frames "
                          "(or {\"type\": \"end\"}).")

    def _configure(self, message: Mapping[str, Any]) -> Configure:
        if message.get("text") is None:
            raise StreamError("config_required", "The first message must be the JSON config "
                              "{\"type\": \"config\", \"encoding\", \"sample_rate\", \"channels\"}.", 1008)
        data = json_message(message)
        try:
            config = StreamConfig(**data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            code, close = ("config_required", 1008) if where == "type" else ("invalid_config", 1003)
            raise StreamError(code, f"{where}: {first['msg']}", close) from exc
        to_16k = StreamResampler(OpusPacketDecoder.RATE if config.encoding == "opus" else config.sample_rate)
        if config.encoding == "opus":
            opus = OpusPacketDecoder(config.channels)
            self.decode = lambda data: to_16k(opus(data))
        else:
            self.decode = lambda data: to_16k(pcm_to_float(data, config.encoding, config.channels))
        return Configure(data)

    def render(self, event: Event) -> dict | None:
        if isinstance(event, Transcription):
            t = event.transcript
            body = {"is_final": event.is_final, "text": t.text, "confidence": transcript_confidence(t),
                    "language": t.language, "start_ms": ms(event.start_s), "end_ms": ms(event.end_s)}
            if event.is_final:
                body["words"] = [gateway_word(w, event.offset_s) for s in t.segments for w in (s.words or [])]
            return body
        if isinstance(event, Error):
            return {"error": {"code": event.code, "message": event.message}}
        return None


@router.websocket("/v1/speech/stream")
async def speech_stream(ws: WebSocket):
    svc = services()
    await WebSocketRunner(ws, GatewaySerializer(),
                          lambda send: LiveTranscription(svc, send, option_defaults={"word_timestamps": True})).run()
