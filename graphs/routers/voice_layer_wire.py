"""The voice layer's wire format (`/v1/voice/ws`, seeds/voice-layer-websocket.md): typed parse and render.

Client messages: `session.configure` (validated here into `SessionConfig`),
`audio.append` (base64 int16 PCM, optional `sample_rate` and `previous_text`),
raw binary int16 PCM frames, `audio.commit`, `text.prompt`, `session.close`.
Server messages: `session.ready`, `session.configured`, `stt.session_started`,
`transcript.partial` / `.committed`, `assistant.started`, `assistant.message`,
`assistant.audio.start` / `.chunk` / `.end`, `assistant.audio`, `error`.
The hosted reference's names stay meaningful: its STT/TTS model ids map to
our defaults, its VAD fields drive our turn detection (see `stt_fields`).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphs.transport import json_message
from speechcore.audio import StreamResampler, pcm_to_float
from speechcore.formats import ms
from speechcore.sessions.events import (AudioIn, Commit, EndOfInput, Error, Event, Final, Partial, StreamError,
                                        TextIn)

InputRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]
PCM_FORMATS = {f"pcm_{r}": r for r in (8000, 16000, 22050, 24000, 44100, 48000)}
MP3_FORMATS = {"mp3_22050_32": (22050, 32), "mp3_44100_32": (44100, 32), "mp3_44100_64": (44100, 64),
               "mp3_44100_96": (44100, 96), "mp3_44100_128": (44100, 128), "mp3_44100_192": (44100, 192)}
OUTPUT_PCM = ("pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100")
HOSTED_STT_MODELS = ("scribe_v1", "scribe_v1_experimental", "scribe_v2", "scribe_v2_realtime")
HOSTED_TTS_MODELS = ("eleven_flash_v2_5", "eleven_flash_v2", "eleven_turbo_v2_5", "eleven_turbo_v2",
                     "eleven_multilingual_v2", "eleven_monolingual_v1", "eleven_v3")
MAX_PROMPT_CHARS = 4000
NOT_APPLICABLE = "not_applicable"


# -- session.configure -----------------------------------------------------------------------------
class _Open(BaseModel):
    """Extra keys are kept and reported back as ignored (never silently dropped)."""
    model_config = ConfigDict(extra="allow")

    def ignored(self) -> list[str]:
        return sorted(self.model_extra or {})


class SttConfig(_Open):
    model_id: str | None = Field(None, max_length=100)
    sample_rate: InputRate | None = None
    audio_format: Literal[tuple(PCM_FORMATS)] | None = None  # type: ignore[valid-type]
    language_code: str | None = Field(None, max_length=8)
    commit_strategy: Literal["vad", "manual"] = "vad"
    vad_threshold: float = Field(0.5, ge=0.05, le=0.95)
    vad_silence_threshold_secs: float = Field(0.5, ge=0.064, le=5.0)
    min_speech_duration_ms: int = Field(160, ge=0, le=2000)
    min_silence_duration_ms: int = Field(160, ge=0, le=5000)
    include_timestamps: bool = False

    @model_validator(mode="after")
    def _rates_agree(self) -> SttConfig:
        if self.audio_format and self.sample_rate and PCM_FORMATS[self.audio_format] != self.sample_rate:
            raise ValueError(f"audio_format {self.audio_format} does not match sample_rate {self.sample_rate}")
        return self

    @property
    def rate(self) -> int:
        return PCM_FORMATS[self.audio_format] if self.audio_format else self.sample_rate or 16000


class VoiceSettings(_Open):
    stability: float | None = Field(None, ge=0.0, le=1.0)
    similarity_boost: float | None = Field(None, ge=0.0, le=1.0)
    speed: float = Field(1.0, ge=0.25, le=4.0)


class TtsConfig(_Open):
    voice_id: str | None = Field(None, max_length=200)
    model_id: str | None = Field(None, max_length=100)
    output_format: Literal[(*OUTPUT_PCM, *MP3_FORMATS)] = "pcm_24000"  # type: ignore[valid-type]
    voice_settings: VoiceSettings = Field(default_factory=VoiceSettings)

    @property
    def rate(self) -> int:
        return PCM_FORMATS.get(self.output_format) or MP3_FORMATS[self.output_format][0]

    @property
    def streamed(self) -> bool:
        """pcm plays from chunks as they come; mp3 is sent as one blob per answer."""
        return self.output_format in PCM_FORMATS


class BackendConfig(_Open):
    registration_id: str | None = Field(None, max_length=200)
    provider: str | None = Field(None, max_length=50)
    api_key: str | None = Field(None, max_length=500)
    model: str | None = Field(None, max_length=200)
    base_url: str | None = Field(None, max_length=500)
    system_prompt: str | None = Field(None, min_length=1, max_length=8000)


class SessionConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str | None = Field(None, max_length=200)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    stt: SttConfig = Field(default_factory=SttConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)


def stt_fields(stt: SttConfig) -> dict[str, Any]:
    """The document's STT fields as our turn-detection and transcription options (StreamOptions names).

    vad_silence_threshold_secs is the silence that ends (commits) a turn; min_silence_duration_ms the
    shorter pause after which speech counts as stopped (barge-in candidates reset, the final decode
    starts early); min_speech_duration_ms drops shorter turns; include_timestamps asks for words.
    """
    silence_ms = round(stt.vad_silence_threshold_secs * 1000)
    return {"language": stt.language_code, "vad_threshold": stt.vad_threshold, "silence_ms": silence_ms,
            "speculate_ms": min(stt.min_silence_duration_ms, silence_ms), "min_speech_ms": stt.min_speech_duration_ms,
            "word_timestamps": stt.include_timestamps}


# -- events between the serializer and the session --------------------------------------------------
@dataclass(frozen=True)
class ConfigureSession(Event):
    config: SessionConfig


@dataclass(frozen=True)
class PreviousText(Event):
    """Text before the segment that starts with the next audio: the ASR prompt of that segment."""
    text: str


@dataclass(frozen=True)
class Ready(Event):
    message: str = "Send session.configure to begin."


@dataclass(frozen=True)
class Configured(Event):
    session_id: str
    applied: dict[str, Any]


@dataclass(frozen=True)
class SttStarted(Event):
    session_id: str
    config: dict[str, Any]


@dataclass(frozen=True)
class AssistantStarted(Event):
    text: str


@dataclass(frozen=True)
class AssistantMessage(Event):
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class AudioStart(Event):
    turn_id: int
    output_format: str


@dataclass(frozen=True)
class AudioChunk(Event):
    turn_id: int
    audio: bytes
    output_format: str
    chunk_index: int


@dataclass(frozen=True)
class AudioEnd(Event):
    turn_id: int
    output_format: str
    chunk_count: int
    interrupted: bool = False


@dataclass(frozen=True)
class AudioBlob(Event):
    turn_id: int
    audio: bytes
    content_type: str
    output_format: str


# -- the serializer ----------------------------------------------------------------------------------
class VoiceLayerSerializer:
    family = "voice_layer"

    def __init__(self) -> None:
        self.input_rate: int | None = None        # set by the session once a configuration is applied
        self._resamplers: dict[int, StreamResampler] = {}

    def configured(self, rate: int) -> None:
        self.input_rate = rate

    def parse(self, message: Mapping[str, Any]) -> list[Event]:
        if message.get("bytes") is not None:
            return [self._audio(message["bytes"], None)]
        data = json_message(message)
        kind = data.get("type")
        if kind == "session.configure":
            return [ConfigureSession(_validated(SessionConfig, data, "session.configure"))]
        if kind == "audio.append":
            return self._append(data)
        if kind == "audio.commit":
            self._require_config()
            return [Commit()]
        if kind == "text.prompt":
            self._require_config()
            return [TextIn(_text(data.get("text"), "text.prompt.text"))]
        if kind == "session.close":
            return [EndOfInput()]
        raise StreamError("unknown_type", f"Unknown message type {kind!r}; expected session.configure, "
                          "audio.append, audio.commit, text.prompt or session.close.")

    def _append(self, data: dict[str, Any]) -> list[Event]:
        audio = data.get("audio")
        if not isinstance(audio, str) or not audio:
            raise StreamError("invalid_audio", "audio.append needs `audio`: base64 int16 PCM.")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except ValueError as exc:
            raise StreamError("invalid_audio", "audio.append `audio` is not valid base64.") from exc
        rate = data.get("sample_rate")
        if rate is not None and rate not in PCM_FORMATS.values():
            raise StreamError("invalid_sample_rate", f"sample_rate {rate!r} is not one of "
                              f"{sorted(PCM_FORMATS.values())}.")
        events: list[Event] = []
        if data.get("previous_text") is not None:
            events.append(PreviousText(_text(data["previous_text"], "audio.append.previous_text")))
        return [*events, self._audio(pcm, rate)]

    def _audio(self, pcm: bytes, rate: int | None) -> AudioIn:
        configured = self._require_config()
        if len(pcm) % 2:
            raise StreamError("invalid_audio", "Audio must be whole 16-bit little-endian samples (odd byte count).")
        rate = rate or configured
        if rate not in self._resamplers:
            self._resamplers[rate] = StreamResampler(rate)
        return AudioIn(self._resamplers[rate](pcm_to_float(pcm, "pcm16", 1)))

    def _require_config(self) -> int:
        if self.input_rate is None:
            raise StreamError("not_configured", "Send session.configure before audio, commits or prompts.")
        return self.input_rate

    def render(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, Partial):
            return {"type": "transcript.partial", "text": event.transcript.text}
        if isinstance(event, Final):
            return committed(event)
        return _RENDER[type(event)](event) if type(event) in _RENDER else None


def committed(event: Final) -> dict[str, Any]:
    t = event.transcript
    body: dict[str, Any] = {"type": "transcript.committed", "text": t.text, "language": t.language}
    words = [w for s in t.segments for w in (s.words or [])]
    if words:
        body["words"] = [{"text": w.word.strip(), "start": round(event.offset_s + w.start, 3),
                          "end": round(event.offset_s + w.end, 3)} for w in words]
        body["start_ms"], body["end_ms"] = ms(event.start_s), ms(event.end_s)
    return body


PCM_TYPE = "application/octet-stream"


_RENDER: dict[type, Any] = {
    Ready: lambda e: {"type": "session.ready", "message": e.message},
    Configured: lambda e: {"type": "session.configured", "session_id": e.session_id, **e.applied},
    SttStarted: lambda e: {"type": "stt.session_started", "session_id": e.session_id, "config": e.config},
    AssistantStarted: lambda e: {"type": "assistant.started", "text": e.text},
    AssistantMessage: lambda e: {"type": "assistant.message", "text": e.text, "metadata": e.metadata},
    AudioStart: lambda e: {"type": "assistant.audio.start", "turn_id": e.turn_id,
                           "content_type": PCM_TYPE, "output_format": e.output_format},
    AudioChunk: lambda e: {"type": "assistant.audio.chunk", "turn_id": e.turn_id,
                           "audio": base64.b64encode(e.audio).decode(), "content_type": PCM_TYPE,
                           "output_format": e.output_format, "chunk_index": e.chunk_index},
    AudioEnd: lambda e: {"type": "assistant.audio.end", "turn_id": e.turn_id,
                         "content_type": PCM_TYPE, "output_format": e.output_format,
                         "chunk_count": e.chunk_count, **({"interrupted": True} if e.interrupted else {})},
    AudioBlob: lambda e: {"type": "assistant.audio", "turn_id": e.turn_id, "audio": base64.b64encode(e.audio).decode(),
                          "content_type": e.content_type, "output_format": e.output_format},
    Error: lambda e: {"type": "error", "code": e.code, "message": e.message},
}


def _validated(model: type[SessionConfig], data: dict[str, Any], what: str) -> SessionConfig:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StreamError("invalid_config", f"{what}: {where}: {first['msg']}") from exc


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StreamError("invalid_text", f"{what} must be a non-empty string.")
    if len(value) > MAX_PROMPT_CHARS:
        raise StreamError("invalid_text", f"{what} is longer than {MAX_PROMPT_CHARS} characters.")
    return value.strip()
