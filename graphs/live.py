"""The live-transcription session that both transcription WebSockets run (graphs/transport.py runs it).

It wires speechcore.sessions.LiveSession to the shared `vad` and ASR
deployments (whose batch queues merge frames and turns across sessions),
validates session options as request options are validated (model, language,
values; before anything reaches a model), and adds voice profiles (SSAP)
after finals when asked.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from graphs.services import DeploymentClient, Services
from graphs.transcription import check_model_supports
from graphs.transport import Send, Stats
from speechcore.audio import SAMPLE_RATE
from speechcore.errors import ApiError
from speechcore.languages import normalize_language
from speechcore.schemas import ASRRequest, TranscribeOptions, Transcript
from speechcore.sessions.events import AudioIn, Configure, Error, Event, Final, StreamError, VoiceProfile, error_event
from speechcore.sessions.live import AudioFeeder, LiveSession
from speechcore.sessions.transcriber import StreamOptions
from speechcore.settings import get_settings

log = logging.getLogger("speech.live")

VOICE_PROFILE = "voice_profile"
MAX_BACKLOG_S = 10.0        # audio received but not yet through the VAD, per session


class AsrLoad:
    """ASR requests this ingress replica's live sessions have in flight, per deployment."""
    in_flight: dict[str, int] = {}


class LiveTranscription:
    """A `transport.Session`: audio and config events in, turn results out through `send`."""

    def __init__(self, svc: Services, send: Send, option_defaults: dict | None = None, ssap_allowed: bool = False):
        self.svc, self.send = svc, send
        self.option_defaults = option_defaults or {}
        self.ssap_allowed = ssap_allowed
        self.ssap = False
        self.model: str | None = None
        self.settings = get_settings()
        self.session: LiveSession | None = None
        self.feeder: AudioFeeder | None = None
        self._side_tasks: set[asyncio.Task] = set()

    # -- transport.Session ------------------------------------------------------------------------
    async def start(self, query: dict[str, str]) -> None:
        defaults = StreamOptions().updated(self.option_defaults)
        _require(self.svc.vad)
        options = await self._configure(defaults, query)
        _require(self.svc.asr(self.model))
        self.session = LiveSession(options, self._vad, self._transcribe, self._emit,
                                   partials_allowed=self._asr_has_room)
        self.feeder = AudioFeeder(self.session.feed, int(MAX_BACKLOG_S * SAMPLE_RATE))

    @property
    def _started(self) -> tuple[LiveSession, AudioFeeder]:
        assert self.session is not None and self.feeder is not None, "start() comes first"
        return self.session, self.feeder

    async def handle(self, event: Event) -> None:
        session, feeder = self._started
        if isinstance(event, AudioIn):
            await feeder.put(event.audio)
        elif isinstance(event, Configure):
            options = await self._configure(session.options, event.fields)
            if options.language != session.options.language:
                session.language = options.language
            session.options = options

    async def finish(self) -> None:
        session, feeder = self._started
        await feeder.drain()
        await session.finish()
        while self._side_tasks:
            await asyncio.gather(*list(self._side_tasks), return_exceptions=True)

    async def close(self) -> None:
        if self.feeder is not None:
            await self.feeder.close()
        if self.session is not None:
            await self.session.close()
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*list(self._side_tasks), return_exceptions=True)

    # -- options ----------------------------------------------------------------------------------
    async def _configure(self, options: StreamOptions, fields: dict) -> StreamOptions:
        """Model, SSAP and stream options from a config message or the query string, all checked
        before any of them is used: StreamError closing the session (1003, 1008, 1013) otherwise."""
        options = options.updated(fields)
        model = self.model
        if fields.get("model") is not None:
            model = str(fields["model"])
            try:
                _require(self.svc.asr(model))
            except ApiError as err:
                raise StreamError(err.code, err.message, close_code=getattr(err, "close_code", None) or 1008) from err
        options = await self._checked_language(options, model)
        ssap = self.ssap
        if fields.get("ssap") is not None and self.ssap_allowed:
            ssap = _parse(bool, fields["ssap"], "ssap")
        self.model = model
        if ssap and VOICE_PROFILE not in self.svc.handles:
            ssap = False
            await self.send(Error("ssap_unavailable", "Voice profiling (SSAP) is not part of this deployment "
                                  "graph; transcripts continue without it."))
        self.ssap = ssap
        return options

    async def _checked_language(self, options: StreamOptions, model: str | None) -> StreamOptions:
        """The language as a code the chosen model supports (as file transcription checks it)."""
        language = normalize_language(options.language)
        try:
            await check_model_supports(self.svc.asr(model), model or self.svc.spec.default_asr,
                                       TranscribeOptions(language=language))
        except ApiError as err:
            raise StreamError(err.code, err.message, close_code=1003) from err
        return options.model_copy(update={"language": language})

    # -- model calls (shared deployments, batched across sessions) ----------------------------------
    async def _vad(self, audio: np.ndarray, state: Any) -> tuple[np.ndarray, float, Any]:
        return await self.svc.vad.stream_probs(audio, state)

    async def _transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        return await live_transcribe(self.svc, self.model, audio, options)

    def _asr_has_room(self) -> bool:
        return asr_has_room(self.svc, self.model)

    # -- output -----------------------------------------------------------------------------------
    async def _emit(self, event: Event) -> None:
        await self.send(event)
        if isinstance(event, Final) and self.ssap and event.audio is not None:
            task = asyncio.ensure_future(self._profile(event.turn, event.audio))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _profile(self, turn: int, audio: np.ndarray) -> None:
        try:
            properties = await self.svc.voice_profile.profile(audio)
            await self.send(VoiceProfile(turn, properties))
        except ApiError as err:
            await self.send(error_event(err))
        except Exception as exc:  # logged here; the client gets a message without internals
            log.warning("voice profile failed: %r", exc)
            await self.send(Error("ssap_failed", f"Voice profiling of turn {turn} failed; transcripts go on."))


async def live_transcribe(svc: Services, model: str | None, audio: np.ndarray,
                          options: TranscribeOptions) -> Transcript:
    """One live decode on the shared ASR deployment, counted in `AsrLoad`."""
    asr = svc.asr(model)
    request = ASRRequest(audio, [(0.0, len(audio) / SAMPLE_RATE)], options)
    AsrLoad.in_flight[asr.deployment] = AsrLoad.in_flight.get(asr.deployment, 0) + 1
    try:
        return await asr.transcribe(request)
    finally:
        AsrLoad.in_flight[asr.deployment] -= 1


def asr_has_room(svc: Services, model: str | None) -> bool:
    """Partials are previews: skip one while the ASR is backed up, so finals are not queued behind it."""
    busy = AsrLoad.in_flight.get(svc.asr_deployment(model), 0)
    return busy < get_settings().stream_partial_backlog


def _require(client: DeploymentClient) -> None:
    """The deployment is ready, or the session closes with 1013 and the reason."""
    try:
        client.handle()
    except ApiError as err:
        raise StreamError(err.code, err.message, close_code=1013, status=503) from err


def live_stats() -> dict:
    return {**Stats.snapshot(), "asr_in_flight": sum(AsrLoad.in_flight.values()),
            **_our_tasks()}


def _our_tasks() -> dict:
    """Unfinished asyncio tasks running this project's code, counted and by coroutine (to find a leak)."""
    root = str(Path(__file__).resolve().parents[1])
    kinds: dict[str, int] = {}
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and code.co_filename.startswith(root) \
                and "/.venv" not in code.co_filename:
            kinds[code.co_qualname] = kinds.get(code.co_qualname, 0) + 1
    return {"tasks": sum(kinds.values()), "task_kinds": kinds}


def _parse(kind: type, value, name: str):
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise StreamError("invalid_config", f"{name}: {exc.errors()[0]['msg']}", close_code=1003) from exc
