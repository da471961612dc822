"""Live transcription over WebSockets: one connection runner for every API family.

A family (platform `/ws/transcribe/vad`, gateway `/v1/speech/stream`) supplies
a `LiveProtocol`: how its messages become audio / config / end, and how
results and errors are written. Everything else is here once: the session
engine (speechcore.streaming) wired to the shared `vad` and ASR deployments
(whose `@serve.batch` methods batch frames and turns across sessions), idle
timeout, frame size limit, close codes, voice profiles, clean-up.

Close codes: 1000 after `end`; 1003 unusable stream config (encoding, rate,
channels); 1008 protocol violation (audio before config, unknown model);
1009 message over `stream_max_frame_bytes`; 1011 internal error; 1013 a
needed deployment is not ready; 4408 idle for `stream_idle_timeout_s`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from fastapi import WebSocket
from pydantic import TypeAdapter, ValidationError

from graphs.services import Services
from speechcore.errors import ApiError, ws_error_event
from speechcore.schemas import ASRRequest, TranscribeOptions, Transcript
from speechcore.settings import get_settings
from speechcore.streaming import LiveSession, StreamError, StreamOptions, TurnResult

log = logging.getLogger("speech.live")

END = "end"
VOICE_PROFILE = "voice_profile"
MAX_BACKLOG_S = 10.0        # audio received but not yet through the VAD, per session


@dataclass
class LiveConfig:
    """Session settings from a config message: stream options, `model`, `ssap`."""
    fields: dict


class LiveProtocol(Protocol):
    option_defaults: dict
    """StreamOptions this family changes from the server defaults (e.g. word timings)."""

    def parse(self, message: dict) -> list[np.ndarray | LiveConfig | str]: ...
    def result(self, result: TurnResult) -> dict: ...


class LiveStats:
    """What the live sessions of this ingress replica hold now (for leak checks and load tests)."""
    sessions = 0
    asr_in_flight: dict[str, int] = {}


# -- helpers shared by the family protocols ----------------------------------------------------
def json_message(message: dict) -> dict:
    """The JSON object in a text frame; StreamError (recoverable) otherwise."""
    text = message.get("text")
    if text is None:
        raise StreamError("unsupported_frame", "Expected a JSON text message here, got a binary frame.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreamError("invalid_json", f"Message is not valid JSON: {exc.msg} at position {exc.pos}.") from exc
    if not isinstance(data, dict):
        raise StreamError("invalid_json", "Message must be a JSON object.")
    return data


def base64_audio(value) -> bytes:
    if not isinstance(value, str):
        raise StreamError("invalid_audio_event", "audio_event.audio_base_64 must be a base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StreamError("invalid_base64", f"audio_event.audio_base_64 is not valid base64: {exc}.") from exc


# -- the connection -----------------------------------------------------------------------------
class LiveConnection:
    def __init__(self, ws: WebSocket, svc: Services, protocol: LiveProtocol, ssap_allowed: bool = False):
        self.ws, self.svc, self.protocol = ws, svc, protocol
        self.path = ws.url.path
        self.ssap_allowed = ssap_allowed
        self.ssap = False
        self.model: str | None = None
        self.settings = get_settings()
        self.idle_timeout = self.settings.stream_idle_timeout_s
        self._send_lock = asyncio.Lock()
        self._side_tasks: set[asyncio.Task] = set()
        self._pending: list[np.ndarray] = []            # audio received, not yet through the VAD
        self._audio_ready = asyncio.Event()
        self._feeder: asyncio.Task | None = None
        self._feeding = False
        self._open = True
        self.session: LiveSession | None = None

    async def serve(self) -> None:
        await self.ws.accept()
        LiveStats.sessions += 1
        try:
            defaults = StreamOptions().updated(self.protocol.option_defaults)
            options = await self._configure(defaults, dict(self.ws.query_params), from_query=True)
            self.session = LiveSession(options, self._vad_step, self._transcribe, self._emit,
                                       partials_allowed=self._asr_has_room)
            await self._loop()
        except StreamError as err:
            await self._fail(err)
        except Exception as exc:  # never a silent drop: tell the client, then close
            log.exception("live session failed")
            await self._fail(StreamError("internal_error", f"Internal error: {type(exc).__name__}", 1011, 500))
        finally:
            await self._cleanup()

    async def _loop(self) -> None:
        while self._open:
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.idle_timeout)
            except asyncio.TimeoutError:
                await self._send(ws_error_event(self.path, "idle_timeout",
                                                f"No message for {self.idle_timeout:g} s; closing."))
                await self._finish(4408, "idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                self._open = False
                return
            self._check_size(message)
            try:
                for action in self.protocol.parse(message):
                    if await self._apply(action):
                        return
            except (StreamError, ApiError) as err:
                if getattr(err, "close_code", None):
                    raise
                await self._send(ws_error_event(self.path, err.code, err.message))

    async def _apply(self, action) -> bool:
        """Apply one parsed action; True when the session is over."""
        if isinstance(action, np.ndarray):
            self._pending.append(action)
            self._audio_ready.set()
            if self._feeder is None:
                self._feeder = asyncio.ensure_future(self._feed())
            while sum(a.size for a in self._pending) > MAX_BACKLOG_S * 16000 and not self._feeder.done():
                await asyncio.sleep(0.01)      # backpressure: stop reading until the VAD catches up
        elif isinstance(action, LiveConfig):
            self.session.options = await self._configure(self.session.options, action.fields)
            if action.fields.get("language"):
                self.session.language = self.session.options.language
        elif action == END:
            await self._finish(1000, "end of stream")
            return True
        return False

    async def _configure(self, options: StreamOptions, fields: dict, from_query: bool = False) -> StreamOptions:
        """Model, SSAP and stream options from a config message or the query string."""
        if from_query and "idle_timeout_s" in fields:
            asked = _parse(float, fields["idle_timeout_s"], "idle_timeout_s")
            self.idle_timeout = min(self.idle_timeout, max(1.0, asked))
        options = options.updated(fields)
        if fields.get("model") is not None:
            try:
                deployment = self.svc.asr_deployment(str(fields["model"]))
            except ApiError as err:
                raise StreamError(err.code, err.message, close_code=1008) from err
            self._require(deployment)
            self.model = str(fields["model"])
        if from_query:
            self._require("vad")
            self._require(self.svc.asr_deployment(self.model))
        if fields.get("ssap") is not None and self.ssap_allowed:
            self.ssap = _parse(bool, fields["ssap"], "ssap")
            if self.ssap and VOICE_PROFILE not in self.svc.handles:
                self.ssap = False
                await self._send(ws_error_event(self.path, "ssap_unavailable", "Voice profiling (SSAP) is not "
                                                "part of this deployment graph; transcripts continue without it."))
        return options

    def _require(self, deployment: str) -> None:
        try:
            self.svc._ready_handle(deployment)
        except ApiError as err:
            raise StreamError(err.code, err.message, close_code=1013, status=503) from err

    def _check_size(self, message: dict) -> None:
        size = len(message.get("text") or message.get("bytes") or b"")
        if size > self.settings.stream_max_frame_bytes:
            raise StreamError("frame_too_large", f"Message of {size} bytes exceeds the limit of "
                              f"{self.settings.stream_max_frame_bytes} bytes; send 100 ms chunks.", 1009, 413)

    # -- model calls (shared deployments, batched across sessions) ----------------------------
    async def _vad_step(self, frames: np.ndarray, state: np.ndarray):
        return await self.svc.call("vad", "step", (frames, state))

    async def _transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        deployment = self.svc.asr_deployment(self.model)
        request = ASRRequest(audio, [(0.0, len(audio) / 16000)], options)
        LiveStats.asr_in_flight[deployment] = LiveStats.asr_in_flight.get(deployment, 0) + 1
        try:
            return await self.svc.call(deployment, "transcribe", request)
        finally:
            LiveStats.asr_in_flight[deployment] -= 1

    def _asr_has_room(self) -> bool:
        """Partials are previews: skip one while the ASR is backed up, so finals are not queued behind it."""
        busy = LiveStats.asr_in_flight.get(self.svc.asr_deployment(self.model), 0)
        return busy < self.settings.stream_partial_backlog

    async def _profile(self, audio: np.ndarray) -> None:
        try:
            properties = await self.svc.call(VOICE_PROFILE, "profile", audio)
            await self._send({"type": "ssap", "properties": properties})
        except ApiError as err:
            await self._send(ws_error_event(self.path, err.code, err.message))

    # -- output -------------------------------------------------------------------------------
    async def _emit(self, event: TurnResult | ApiError) -> None:
        if isinstance(event, ApiError):
            await self._send(ws_error_event(self.path, event.code, event.message))
            return
        await self._send(self.protocol.result(event))
        if event.is_final and self.ssap and event.audio is not None:
            task = asyncio.ensure_future(self._profile(event.audio))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _send(self, body: dict) -> None:
        if not self._open:
            return
        async with self._send_lock:
            try:
                await self.ws.send_json(body)
            except Exception:  # the client went away mid-send
                self._open = False

    async def _feed(self) -> None:
        """Audio -> VAD, off the receive loop: a session that falls behind catches up with one
        larger VAD call instead of one call per message, and receiving never waits on a model."""
        while True:
            await self._audio_ready.wait()
            self._audio_ready.clear()
            audio, self._pending = self._pending, []
            if not audio:
                continue
            self._feeding = True
            try:
                await self.session.feed(np.concatenate(audio))
            except ApiError as err:
                await self._send(ws_error_event(self.path, err.code, err.message))
            except Exception as exc:  # the VAD call failed: report it, keep the session
                log.warning("VAD step failed: %s", exc)
                await self._send(ws_error_event(self.path, "vad_failed", f"Voice activity detection failed: {exc}"))
            finally:
                self._feeding = False

    async def _drain(self) -> None:
        """Wait until every received chunk has been through the VAD."""
        while (self._pending or self._feeding) and self._feeder is not None and not self._feeder.done():
            await asyncio.sleep(0.005)
        if self._feeder is not None:
            self._feeder.cancel()
            await asyncio.gather(self._feeder, return_exceptions=True)

    async def _finish(self, code: int, reason: str) -> None:
        """Flush: the open turn becomes final, every result is sent, then close."""
        await self._drain()
        await self.session.finish()
        while self._side_tasks:
            await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
        await self._close(code, reason)

    async def _fail(self, err: StreamError) -> None:
        await self._send(ws_error_event(self.path, err.code, err.message))
        await self._close(err.close_code or 1011, err.code)

    async def _close(self, code: int, reason: str) -> None:
        if self._open:
            self._open = False
            try:
                await self.ws.close(code, reason)
            except Exception:
                pass

    async def _cleanup(self) -> None:
        self._open = False
        if self._feeder is not None:
            self._feeder.cancel()
            await asyncio.gather(self._feeder, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        for task in list(self._side_tasks):
            task.cancel()
        await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
        LiveStats.sessions -= 1


def live_stats() -> dict:
    return {"sessions": LiveStats.sessions, "asr_in_flight": sum(LiveStats.asr_in_flight.values()),
            "tasks": sum(1 for t in asyncio.all_tasks() if not t.done())}


def _parse(kind: type, value, name: str):
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise StreamError("invalid_config", f"{name}: {exc.errors()[0]['msg']}") from exc
