"""The `/v1/voice/ws` session: a voice-layer configuration applied to the shared conversation engine.

`session.configure` is checked whole before anything starts (ASR model and
language, voice, TTS model, backend), then becomes a `Conversation`
(speechcore/sessions/conversation.py) over the in-server models: a
`LiveSession` on the shared VAD and ASR deployments, the `llm` deployment (or
the external chat backend, graphs/voice_layer_backend.py) and streamed TTS.
The conversation's events are turned into the document's: the user text of a
turn opens `assistant.started`, the text's end gives `assistant.message` with
its metadata, agent audio is framed as `assistant.audio.start/.chunk/.end`
(pcm) or gathered into one `assistant.audio` blob (mp3).
"""
from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import numpy as np

from graphs import speech
from graphs.live import asr_has_room, live_transcribe
from graphs.routers.voice_layer_wire import (HOSTED_STT_MODELS, HOSTED_TTS_MODELS, NOT_APPLICABLE, AssistantMessage,
                                             AssistantStarted, AudioBlob, AudioChunk, AudioEnd, AudioStart,
                                             Configured, ConfigureSession, PreviousText, Ready, SessionConfig,
                                             SttStarted, VoiceLayerSerializer, stt_fields)
from graphs.services import Services
from graphs.transcription import check_model_supports
from graphs.transport import Send
from graphs.voice_chat import ServerTTS, VoiceRouting
from graphs.voice_layer_backend import chat_for
from speechcore.audio import encode_audio, float_to_pcm16
from speechcore.errors import ApiError
from speechcore.languages import normalize_language
from speechcore.schemas import TranscribeOptions, Transcript
from speechcore.sessions.conversation import (LISTENING, USER_SPEAKING, Conversation, ConversationConfig,
                                              RecognizerFactory)
from speechcore.sessions.events import (AgentEnd, AudioOut, Event, Final, Interrupted, Latency,
                                        StateChanged, StreamError, TextIn, Thinking)
from speechcore.sessions.live import LiveSession
from speechcore.sessions.transcriber import StreamOptions
from speechcore.settings import get_settings
from speechcore.voices.catalog import Voice


class PromptedASR:
    """Live decodes on the shared ASR deployment, with the open segment's previous_text (`prompt[0]`)
    as the ASR prompt (Whisper's initial prompt: spelling, names, style)."""

    def __init__(self, svc: Services, model: str | None, prompt: list[str]):
        self.svc, self.model, self.prompt = svc, model, prompt

    async def __call__(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        return await live_transcribe(self.svc, self.model, audio, replace(options, prompt=self.prompt[0] or None))


def recognizer(svc: Services, model: str | None, options: StreamOptions, prompt: list[str]) -> RecognizerFactory:
    """A LiveSession on the shared VAD and ASR deployments (batched across sessions)."""
    async def vad(audio: np.ndarray, state: Any) -> tuple[np.ndarray, float, Any]:
        return await svc.vad.stream_probs(audio, state)

    return lambda emit: LiveSession(options, vad, PromptedASR(svc, model, prompt), emit,
                                    partials_allowed=lambda: asr_has_room(svc, model))


class VoiceLayerSession:
    """A `transport.Session` speaking the voice layer's events (see the module docstring)."""

    def __init__(self, svc: Services, send: Send, serializer: VoiceLayerSerializer):
        self.svc, self.send, self.serializer = svc, send, serializer
        self.conversation: Conversation | None = None
        self.config: SessionConfig | None = None
        self.chat: Any = None
        self.prompt: list[str] = [""]          # previous_text of the open segment
        self.user_text: list[str] = []         # what the user said since the last answer started
        self.turn_id = 0
        self.timings: dict[str, float] = {}     # Latency steps of the current answer
        self._asr: float | None = None
        self._chunks = 0
        self._mp3: list[np.ndarray] = []

    # -- transport.Session ----------------------------------------------------------------------------
    async def start(self, query: dict[str, str]) -> None:
        await self.send(Ready())

    def busy(self) -> bool:
        return self.conversation is not None and self.conversation.state not in (LISTENING, USER_SPEAKING)

    async def handle(self, event: Event) -> None:
        if isinstance(event, ConfigureSession):
            await self._configure(event.config)
            return
        if isinstance(event, PreviousText):
            self.prompt[0] = event.text
            return
        if self.conversation is None:
            raise StreamError("not_configured", "Send session.configure before audio, commits or prompts.")
        if isinstance(event, TextIn):
            self.user_text = [event.text]
        await self.conversation.handle(event)

    async def finish(self) -> None:
        if self.conversation is not None:
            await self.conversation.finish()

    async def close(self) -> None:
        if self.conversation is not None:
            await self.conversation.close()
        aclose = getattr(self.chat, "aclose", None)
        if aclose is not None:
            await aclose()

    # -- configuration ------------------------------------------------------------------------------------
    async def _configure(self, config: SessionConfig) -> None:
        if self.conversation is not None:
            raise StreamError("already_configured", "This session is configured; open a new connection to "
                              "change its configuration.")
        try:
            model = await self._stt_model(config)
            catalog = await speech.catalog(self.svc)
            voice = catalog.named(config.tts.voice_id, param="tts.voice_id") if config.tts.voice_id else None
            tts_model = self._tts_model(config)
            chat = await chat_for(self.svc, config.backend, config.session_id)
        except ApiError as err:
            raise StreamError(err.code, err.message) from err
        stt = config.stt
        options = StreamOptions().updated(stt_fields(stt))
        prompt = config.backend.system_prompt or get_settings().voice_layer_system_prompt
        conv_config = ConversationConfig(language=options.language, voice=voice.name if voice else None,
                                         vad_threshold=stt.vad_threshold, silence_ms=options.silence_ms,
                                         min_speech_ms=stt.min_speech_duration_ms, commit=stt.commit_strategy,
                                         sample_rate=config.tts.rate, **({"system_prompt": prompt} if prompt else {}))
        self.chat, self.config = chat, config
        self.conversation = Conversation(conv_config, recognizer(self.svc, model, options, self.prompt), chat,
                                         ServerTTS(self.svc, catalog, config.tts.voice_settings.speed),
                                         self._on_event, voice_for=VoiceRouting(catalog, voice.id if voice else None,
                                                                                None))
        self.serializer.configured(stt.rate)
        session_id = config.session_id or str(uuid.uuid4())
        await self.send(Configured(session_id, self._applied(voice, tts_model)))
        await self.send(SttStarted(str(uuid.uuid4()), {
            "model_id": model or self.svc.spec.default_asr, "requested_model_id": stt.model_id,
            "sample_rate": stt.rate, "audio_format": f"pcm_{stt.rate}", "language_code": options.language,
            "commit_strategy": stt.commit_strategy, "vad_threshold": stt.vad_threshold,
            "vad_silence_threshold_secs": options.silence_ms / 1000,
            "min_speech_duration_ms": stt.min_speech_duration_ms,
            "min_silence_duration_ms": options.speculate_ms, "include_timestamps": stt.include_timestamps,
            "ignored": stt.ignored()}))

    async def _stt_model(self, config: SessionConfig) -> str | None:
        """Our ASR model for `stt.model_id` (hosted names: the default), checked ready and for the language."""
        asked = config.stt.model_id
        model = None if asked is None or asked in HOSTED_STT_MODELS else asked
        asr = self.svc.asr(model)
        asr.handle()
        language = normalize_language(config.stt.language_code)
        await check_model_supports(asr, model or self.svc.spec.default_asr, TranscribeOptions(language=language))
        config.stt.language_code = language
        return model

    def _tts_model(self, config: SessionConfig) -> str:
        ours = self.svc.spec.role("tts").model
        asked = config.tts.model_id
        if asked is not None and asked not in HOSTED_TTS_MODELS and asked != ours:
            raise ApiError(404, "tts_model_not_found", f"TTS model {asked!r} not found; this server speaks with "
                           f"{ours!r} (hosted model names map to it).")
        return ours

    def _applied(self, voice: Voice | None, tts_model: str) -> dict[str, Any]:
        assert self.config is not None
        tts = self.config.tts
        return {"tts": {"voice_id": voice.name if voice else None, "model_id": tts_model,
                        "requested_model_id": tts.model_id, "output_format": tts.output_format,
                        "sample_rate": tts.rate, "streamed": tts.streamed,
                        "voice_settings": {"speed": tts.voice_settings.speed, "stability": NOT_APPLICABLE,
                                           "similarity_boost": NOT_APPLICABLE}},
                "backend": self.chat.describe(),
                "ignored": {"tts": tts.ignored(), "voice_settings": tts.voice_settings.ignored(),
                            "backend": self.config.backend.ignored()}}

    # -- conversation events -> the document's events -------------------------------------------------------
    async def _on_event(self, event: Event) -> None:
        assert self.conversation is not None
        if isinstance(event, Final) and self.conversation.state in (LISTENING, USER_SPEAKING):
            self.user_text.append(event.transcript.text.strip())
            self.prompt[0] = ""                      # previous_text applies to one segment
        if isinstance(event, Thinking):
            self.turn_id, self.timings = self.turn_id + 1, {} if self._asr is None else {"asr": self._asr}
            self._asr = None
            text, self.user_text = " ".join(t for t in self.user_text if t), []
            await self.send(AssistantStarted(text))
        elif isinstance(event, AgentEnd):
            metadata = {**getattr(self.chat, "metadata", {}), "timings_ms": dict(self.timings),
                        "turn_id": self.turn_id, "interrupted": event.interrupted}
            await self.send(AssistantMessage(event.text, metadata))
        elif isinstance(event, Latency):
            if event.step == "asr":          # the turn's, sent before its answer starts
                self._asr = event.ms
            else:
                self.timings[event.step] = event.ms
        elif isinstance(event, AudioOut):
            await self._audio(event.audio)
        elif isinstance(event, Interrupted):
            await self._end_audio(interrupted=True)
        elif isinstance(event, StateChanged):
            if event.state in (LISTENING, USER_SPEAKING):
                await self._end_audio(interrupted=False)
        else:
            await self.send(event)

    async def _audio(self, audio: np.ndarray) -> None:
        assert self.config is not None
        tts = self.config.tts
        if not tts.streamed:
            self._mp3.append(audio)
            return
        if self._chunks == 0:
            await self.send(AudioStart(self.turn_id, tts.output_format))
        self._chunks += 1
        await self.send(AudioChunk(self.turn_id, float_to_pcm16(audio), tts.output_format, self._chunks))

    async def _end_audio(self, interrupted: bool) -> None:
        assert self.config is not None
        tts = self.config.tts
        chunks, self._chunks = self._chunks, 0
        mp3, self._mp3 = self._mp3, []
        if chunks:
            await self.send(AudioEnd(self.turn_id, tts.output_format, chunks, interrupted))
        elif mp3 and not interrupted:
            data, content_type = encode_audio(np.concatenate(mp3), tts.rate, "mp3")
            await self.send(AudioBlob(self.turn_id, data, content_type, tts.output_format))
