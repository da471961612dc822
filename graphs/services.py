"""A typed facade over the model deployments: what routers and graphs call.

`svc.vad.regions(audio)`, `svc.asr(model).transcribe(request)`,
`svc.speaker_embedding.embed(audio)`, `svc.tts.synthesize(...)` (async
iterator), ... Every call goes through one guard: a deployment that is not
ready answers 503 at once with the reason, a call that outlives its timeout
(`timeout_for`: longer for longer audio) is cancelled and answers 503
`timeout`, and a caller that goes away cancels the call it made (the
deployment drops queued work of cancelled callers and tells a running decode
to stop at its next segment).
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncGenerator, AsyncIterator

import numpy as np

from graphs.readiness import Readiness
from speechcore.audio import SAMPLE_RATE
from speechcore.batching import audio_seconds
from speechcore.errors import ApiError, Unavailable
from speechcore.schemas import ASRRequest, ChatMessage, GenerationParams, Generated, Speech, Transcript
from speechcore.settings import get_settings
from speechcore.spec import GraphSpec


def timeout_for(audio_s: float) -> float:
    """A model call's time limit: the base plus time per second of audio, so long files never time out."""
    settings = get_settings()
    return settings.request_timeout_s + audio_s * settings.timeout_per_audio_s


def _seconds(audio: np.ndarray) -> float:
    return len(audio) / SAMPLE_RATE


class DeploymentClient:
    """Calls to one deployment, guarded by readiness, bounded by a timeout, cancelled with their caller."""

    def __init__(self, svc: Services, deployment: str):
        self.svc = svc
        self.deployment = deployment

    def handle(self) -> Any:
        """The deployment's handle, or 503 with the reason it is not ready."""
        return self.svc._ready_handle(self.deployment)

    async def call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        timeout_s = timeout_s or timeout_for(0.0)
        response = getattr(self.handle(), method).remote(*args)
        try:
            return await asyncio.wait_for(response, timeout_s)
        except asyncio.CancelledError:
            response.cancel()           # the caller gave up (e.g. a live session dropped a stale decode)
            raise
        except asyncio.TimeoutError as exc:
            response.cancel()
            raise Unavailable(f"'{self.deployment}' did not answer within {timeout_s:.0f} s",
                              code="timeout") from exc

    async def stream(self, method: str, *args: Any) -> AsyncGenerator[Any, None]:
        """Items of a deployment generator; a caller that stops early (a client gone) cancels it."""
        response = getattr(self.handle().options(stream=True), method).remote(*args)
        done = False
        try:
            async for item in response:
                yield item
            done = True
        finally:
            if not done and hasattr(response, "cancel"):
                response.cancel()

    async def info(self) -> dict[str, Any] | None:
        return await self.svc.info(self.deployment)


class VAD(DeploymentClient):
    async def regions(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Speech regions (seconds) of a whole recording."""
        return await self.call("regions", audio, timeout_s=timeout_for(_seconds(audio)))

    async def stream_probs(self, audio: np.ndarray, state: Any) -> tuple[np.ndarray, float, Any]:
        """A stream's next speech probabilities and frame length; `state` is the VAD's own (None to start)."""
        return await self.call("stream_probs", (audio, state))


class ASR(DeploymentClient):
    async def transcribe(self, request: ASRRequest) -> Transcript:
        result = await self.call("transcribe", request, timeout_s=timeout_for(audio_seconds(request)))
        if isinstance(result, ApiError):   # a full lane answers its refusal as a value (see deployments/asr.py)
            raise result
        return result

    async def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        return await self.call("detect_language", audio)


class SpeakerEmbedding(DeploymentClient):
    async def embed(self, audio: np.ndarray) -> np.ndarray:
        return np.asarray(await self.call("embed", audio, timeout_s=timeout_for(_seconds(audio))), dtype=np.float32)


class TTS(DeploymentClient):
    async def voices(self) -> list[dict[str, Any]]:
        return await self.call("voices")

    def synthesize(self, text: str, voice: str | None, speed: float,
                   language: str | None = None) -> AsyncGenerator[Speech, None]:
        """Speech chunks (one per sentence) as they are synthesized; `language` for multilingual voices."""
        return self.stream("synthesize", text, voice, speed, language)


class AntiSpoof(DeploymentClient):
    async def detect(self, audio: np.ndarray, mode: str) -> dict[str, Any]:
        return await self.call("detect", audio, mode, timeout_s=timeout_for(_seconds(audio)))


class VoiceProfile(DeploymentClient):
    async def profile(self, audio: np.ndarray) -> dict[str, dict[str, float]]:
        """Property -> {label: probability}, only for properties a loaded model backs."""
        return await self.call("profile", audio, timeout_s=timeout_for(_seconds(audio)))

    async def unavailable(self) -> dict[str, str]:
        return await self.call("unavailable")


class LLM(DeploymentClient):
    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256,
                    temperature: float = 0.7) -> AsyncIterator[str]:
        """Text pieces as the model generates them."""
        return self.stream("stream", messages, max_tokens, temperature)

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> AsyncIterator[Generated]:
        """Answer pieces, then a last piece with the finish reason and token usage."""
        return self.stream("generate", messages, params)

    async def prefill(self, messages: list[ChatMessage]) -> bool:
        """Read a prompt ahead of its request (False: the model does not keep prompts, or is busy)."""
        return bool(await self.call("prefill", messages))


class Services:
    def __init__(self, spec: GraphSpec, handles: dict[str, Any], readiness: Readiness):
        self.spec = spec
        self.handles = handles          # deployment name -> DeploymentHandle
        self.readiness = readiness
        self.roles = {name: role for name, (role, _) in spec.model_deployments().items()}
        self._info: dict[str, dict[str, Any]] = {}
        self.vad = VAD(self, "vad")
        self.speaker_embedding = SpeakerEmbedding(self, "speaker_embedding")
        self.tts = TTS(self, "tts")
        self.anti_spoof = AntiSpoof(self, "anti_spoof")
        self.voice_profile = VoiceProfile(self, "voice_profile")
        self.llm = LLM(self, "llm")

    def asr(self, model: str | None) -> ASR:
        """The ASR deployment serving the public model name (None: the default); 404 if not configured."""
        return ASR(self, self.asr_deployment(model))

    def asr_deployment(self, model: str | None) -> str:
        """Deployment serving the public ASR model name; 404 for a name not configured."""
        name = model or self.spec.default_asr
        if name not in self.spec.asr:
            raise ApiError(404, "model_not_found",
                           f"Model {name!r} not found; available: {sorted(self.spec.asr)}", param="model")
        return self.spec.asr[name].deployment

    def _ready_handle(self, deployment: str) -> Any:
        state = self.readiness.states.get(deployment)
        if state is None or not state.ready:
            why = f": {state.message}" if state and state.message else ""
            raise Unavailable(f"The {self.roles.get(deployment, deployment)} deployment '{deployment}' "
                              f"is not ready ({state.status if state else 'unknown'}){why}")
        return self.handles[deployment]

    async def info(self, deployment: str) -> dict[str, Any] | None:
        """The backend's ModelInfo as a dict, cached once the deployment answers."""
        if deployment not in self._info and self.readiness.states[deployment].running:   # never wakes one at zero
            try:
                self._info[deployment] = await asyncio.wait_for(self.handles[deployment].info.remote(), 10)
            except Exception:
                return None
        return self._info.get(deployment)
