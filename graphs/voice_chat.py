"""The voice-chat session (`/ws/voice-chat`; any transport): a Conversation wired to its services.

Per-connection state lives here, in the ingress; model work goes to the shared,
batched deployments (`vad`, the ASR, `llm`, `tts`) or, when the config names
them, to external services through speechcore.bridges. The first event must
be the config; it is validated whole (unknown speaker or collection, bad URL,
bad value: close 1003) before the session answers `Ready`. A service that is
not running or cannot be reached is an `Error` event with its source and the
session goes on with what works (text input without an ASR, text answers
without a TTS).
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any, AsyncIterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphs import speech
from graphs.live import asr_has_room, live_transcribe
from graphs.services import Services
from graphs.transport import Send, Stats
from speechcore.bridges.asr_ws import WebSocketASR
from speechcore.bridges.common import checked_url
from speechcore.bridges.openai_chat import OpenAIChat
from speechcore.bridges.tts_ws import WebSocketTTS
from speechcore.errors import ApiError
from speechcore.languages import normalize_language
from speechcore.schemas import ChatMessage, Generated, GenerationParams, Speech, TranscribeOptions, Transcript
from speechcore.sessions.conversation import (SPEAKING, THINKING, ChatModel, ChatOptions, Conversation,
                                              ConversationConfig, Emit, Recognizer, Synthesizer)
from speechcore.sessions.events import Configure, Error, Event, Final, StreamError, TextIn, VoiceProfile
from speechcore.sessions.live import LiveSession
from speechcore.sessions.transcriber import StreamOptions
from speechcore.settings import get_settings
from speechcore.voices.catalog import Catalog
from speechcore.voices.collections import check_uuid

log = logging.getLogger("speech.voice_chat")

FAMILY = "voice_chat"


@dataclass(frozen=True)
class Ready(Event):
    """The config was accepted: the session takes audio and text now."""


class Connections(BaseModel):
    """The config fields that pick the services and voices (the engine's own are ConversationConfig's)."""
    model_config = ConfigDict(extra="ignore")

    speaker_id: str | None = Field(None, max_length=64)
    collection_id: str | None = Field(None, max_length=64)
    tts_ws_url: str | None = Field(None, max_length=2000)
    asr_ws_url: str | None = Field(None, max_length=2000)
    llm_base_url: str | None = Field(None, max_length=2000)
    llm_model: str | None = Field(None, max_length=200)
    model: str | None = Field(None, max_length=100, description="Server ASR model (GET /v1/models).")
    ssap: bool = False


# -- the in-server services -------------------------------------------------------------------------
class ServerLLM:
    """ChatModel on the shared `llm` deployment."""

    def __init__(self, svc: Services):
        self.svc = svc
        self.last: Generated | None = None      # the last answer's closing piece (finish reason, token usage)

    async def stream(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[str]:
        params = GenerationParams(max_tokens=options.max_tokens, temperature=options.temperature)
        self.last = None
        async for piece in self.svc.llm.generate(messages, params):
            if piece.text:
                yield piece.text
            if piece.finish_reason:
                self.last = piece

    async def prefill(self, messages: list[ChatMessage]) -> None:
        await self.svc.llm.prefill(messages)


class ServerTTS:
    """Synthesizer on the shared `tts` deployment (graphs.speech's streaming synthesis)."""

    def __init__(self, svc: Services, catalog: Catalog, speed: float = 1.0):
        self.svc, self.catalog, self.speed = svc, catalog, speed

    def stream(self, text: str, voice: str | None, language: str | None) -> AsyncIterator[Speech]:
        chosen = self.catalog.named(voice) if voice else None
        return speech.stream_speech(self.svc, text, chosen, self.speed, sample_rate=None, language=language)


class VoiceRouting:
    """A turn's language -> the voice: the collection's speaker for it, else `speaker_id`, else the best
    voice for the language, else the default voice."""

    def __init__(self, catalog: Catalog, speaker_id: str | None, collection: dict[str, str] | None):
        self.catalog, self.collection = catalog, collection or {}
        self.speaker = catalog.get(speaker_id.lower()).name if speaker_id else None

    def __call__(self, language: str | None) -> str | None:
        if language and language in self.collection:
            return self.catalog.get(self.collection[language], param="collection_id").name
        if self.speaker:
            return self.speaker
        try:
            return self.catalog.pick(language=language).name
        except ApiError:
            return self.catalog.default.name


class NoRecognizer:
    """Speech input that is not available (its error was reported once): audio is dropped."""
    position = 0

    async def feed(self, audio: np.ndarray) -> None:
        self.position += audio.size

    async def commit(self) -> None: ...
    async def finish(self) -> None: ...
    async def close(self) -> None: ...


# -- the session ------------------------------------------------------------------------------------
class VoiceChat:
    """A `transport.Session`: the config, then audio, text, commit and end events; conversation events out."""

    def __init__(self, svc: Services, send: Send):
        self.svc, self.send = svc, send
        self.settings = get_settings()
        self.conv: Conversation | None = None
        self.links = Connections()
        self._closers: list[Any] = []
        self._side_tasks: set[asyncio.Task[None]] = set()

    async def start(self, query: dict[str, str]) -> None:
        limit = self.settings.voice_chat_max_sessions
        if Stats.of(FAMILY).open > limit:
            raise StreamError("too_many_sessions", f"The server holds its limit of {limit} voice chats; "
                              "retry later.", 1013, 503)

    def busy(self) -> bool:
        """The agent is answering: the idle timeout waits for it."""
        return self.conv is not None and self.conv.state in (THINKING, SPEAKING)

    async def handle(self, event: Event) -> None:
        if self.conv is None:
            if not isinstance(event, Configure):
                raise StreamError("config_required", 'The first message must be {"type": "config", ...}.', 1008)
            self.conv = await self._configure(event.fields)
            await self.send(Ready())
            return
        if isinstance(event, TextIn) and len(event.text) > self.settings.voice_chat_max_text_chars:
            raise StreamError("text_too_long", f"text_input is {len(event.text)} characters; the limit is "
                              f"{self.settings.voice_chat_max_text_chars}.", status=413)
        await self.conv.handle(event)

    async def finish(self) -> None:
        if self.conv is not None:
            await self.conv.finish()

    async def close(self) -> None:
        if self.conv is not None:
            await self.conv.close()
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        for closer in self._closers:
            await closer()

    # -- configuration --------------------------------------------------------------------------------
    async def _configure(self, fields: dict[str, Any]) -> Conversation:
        defaults = ConversationConfig(language=self.settings.voice_chat_language,
                                      followup_after_s=self.settings.voice_chat_followup_after_s)
        fields = {**fields, "language": normalize_language(fields.get("language") or defaults.language) or ""}
        config = defaults.updated(fields)
        if not config.language:
            config = config.model_copy(update={"language": None})
        try:
            self.links = links = Connections.model_validate(fields)
            llm = self._llm(links)
            tts, voice_for = await self._tts(links)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise StreamError("invalid_config", f"{'.'.join(map(str, first['loc']))}: {first['msg']}", 1003) from exc
        except ApiError as err:
            if isinstance(err, StreamError):
                raise
            raise StreamError(err.code, err.message, close_code=1003) from err
        recognizer = self._recognizer(links, config)
        return Conversation(config, recognizer, llm, tts, self._emit, voice_for=voice_for)

    def _llm(self, links: Connections) -> ChatModel:
        if links.llm_base_url:
            return OpenAIChat(links.llm_base_url, links.llm_model or "default",
                              api_key=os.environ.get("VOICE_CHAT_LLM_API_KEY"))
        return ServerLLM(self.svc)

    async def _tts(self, links: Connections) -> tuple[Synthesizer | None, Any]:
        url = links.tts_ws_url or os.environ.get("TTS_WS_URL")
        collection = check_uuid(links.collection_id, "collection_id") if links.collection_id else None
        if url:
            bridge = WebSocketTTS(checked_url(url, ("ws", "wss"), "tts_ws_url"), collection)
            self._closers.append(bridge.close)
            speaker = links.speaker_id if not collection else None
            return bridge, (lambda language: speaker)
        try:
            catalog = await speech.catalog(self.svc)
        except ApiError as err:     # TTS not running: text answers only
            await self.send(Error(err.code, f"{err.message} Answers come as text only.", source="tts"))
            return None, None
        langs = (await asyncio.to_thread(speech.collections().get, collection)).langs if collection else None
        return ServerTTS(self.svc, catalog), VoiceRouting(catalog, links.speaker_id, langs)

    def _recognizer(self, links: Connections, config: ConversationConfig) -> Any:
        if links.asr_ws_url:
            url = checked_url(links.asr_ws_url, ("ws", "wss"), "asr_ws_url")
            turn = {"language": config.language, "silence_ms": config.silence_ms}
            return lambda emit: WebSocketASR(url, emit, turn)
        # no model named: the language's live default (config `live_asr`: Moonshine for English on the CPU profile)
        model = links.model or self.svc.spec.live_asr.get(config.language or "")
        try:
            self.svc.vad.handle()
            self.svc.asr(model).handle()
        except ApiError as err:
            message = f"{err.message} Speech is not transcribed; text input still works."
            self._spawn(self.send(Error(err.code, message, source="asr")))
            return lambda emit: NoRecognizer()
        options = StreamOptions(**config.turn_fields(), language=config.language)
        return lambda emit: self._live(model, options, emit)

    def _live(self, model: str | None, options: StreamOptions, emit: Emit) -> Recognizer:
        async def transcribe(audio: np.ndarray, opts: TranscribeOptions) -> Transcript:
            return await live_transcribe(self.svc, model, audio, opts)
        return LiveSession(options, self.svc.vad.stream_probs, transcribe, emit,
                           partials_allowed=lambda: asr_has_room(self.svc, model))

    # -- output -----------------------------------------------------------------------------------------
    async def _emit(self, event: Event) -> None:
        await self.send(event)
        if isinstance(event, Final) and self.links.ssap and event.audio is not None:
            self._spawn(self._profile(event.turn, event.audio))

    async def _profile(self, turn: int, audio: np.ndarray) -> None:
        try:
            await self.send(VoiceProfile(turn, await self.svc.voice_profile.profile(audio)))
        except ApiError as err:
            await self.send(Error(err.code, err.message, source="asr"))
        except Exception as exc:  # logged here; the client gets a message without internals
            log.warning("voice profile failed: %r", exc)
            await self.send(Error("ssap_failed", f"Voice profiling of turn {turn} failed; the chat goes on."))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
