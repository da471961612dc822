"""Live WebSocket protocols for the clients and the load generator: one small class per wire format.

A protocol says where to connect, what to send first, how to wrap a chunk of
16 kHz float audio, how to end, and which server messages are results. New
WebSocket families (TTS, voice chat) plug in as further protocols.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np


@dataclass(frozen=True)
class LiveEvent:
    kind: str                 # partial, final, ssap, error, audio, other
    text: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.kind == "final"


class LiveProtocol(Protocol):
    path: ClassVar[str]

    def start(self) -> list[str | bytes]: ...
    def audio(self, chunk: np.ndarray) -> str | bytes: ...
    def end(self) -> list[str | bytes]: ...
    def event(self, message: str | bytes) -> LiveEvent: ...


def pcm16(chunk: np.ndarray) -> bytes:
    return (np.clip(chunk, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class PlatformLive:
    """`WS /ws/transcribe/vad`: base64 int16 audio events in, `transcript` events out."""
    path: ClassVar[str] = "/ws/transcribe/vad"

    def start(self) -> list[str | bytes]:
        return []

    def audio(self, chunk: np.ndarray) -> str | bytes:
        return json.dumps({"audio_event": {"audio_base_64": base64.b64encode(pcm16(chunk)).decode()}})

    def end(self) -> list[str | bytes]:
        return [json.dumps({"type": "end"})]

    def event(self, message: str | bytes) -> LiveEvent:
        m = json.loads(message)
        kind = m.get("type", "other")
        if kind == "transcript":
            return LiveEvent("final" if m.get("is_final") else "partial", m.get("text", ""), m)
        return LiveEvent(kind if kind in ("ssap", "error") else "other", m.get("message", ""), m)


class GatewayLive:
    """`WS /v1/speech/stream`: a config message, binary pcm16 frames in; results with `is_final` out."""
    path: ClassVar[str] = "/v1/speech/stream"

    def start(self) -> list[str | bytes]:
        return [json.dumps({"type": "config", "encoding": "pcm16", "sample_rate": 16000, "channels": 1})]

    def audio(self, chunk: np.ndarray) -> str | bytes:
        return pcm16(chunk)

    def end(self) -> list[str | bytes]:
        return [json.dumps({"type": "end"})]

    def event(self, message: str | bytes) -> LiveEvent:
        m = json.loads(message)
        if "error" in m:
            return LiveEvent("error", m["error"].get("message", ""), m)
        return LiveEvent("final" if m.get("is_final") else "partial", m.get("text", ""), m)


PROTOCOLS: dict[str, type[LiveProtocol]] = {"platform": PlatformLive, "gateway": GatewayLive}
