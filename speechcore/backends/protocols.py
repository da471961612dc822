"""One small interface per model role; CPU and GPU backends implement the same one.

These are what the deployments call (their `backend` attributes are typed
with them) and the type checker holds every backend to them.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Iterator, Protocol

import numpy as np

from speechcore.schemas import ASRRequest, ChatMessage, GenerationParams, Generated, ModelInfo, Speech, Transcript


class Backend(Protocol):
    def info(self) -> ModelInfo: ...


class Transcriber(Backend, Protocol):
    def transcribe_batch(self, requests: list[ASRRequest],
                         stopped: Callable[[], bool] | None = None) -> list[Transcript]:
        """One transcript per request; may stop early (results then unused) once `stopped()` is true."""
        ...

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]: ...


class SpeechDetector(Backend, Protocol):
    """Streams: `state` is the detector's own (None to start); callers only pass it back."""

    def frame_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Speech probability per frame of each whole recording."""
        ...

    def stream_probs_batch(self, items: list[tuple[np.ndarray, Any]]) -> list[tuple[np.ndarray, float, Any]]:
        """Per stream: (audio, state or None) -> (probs of its whole frames, frame seconds, next state)."""
        ...


class Embedder(Backend, Protocol):
    def embed_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]: ...


class Synthesizer(Backend, Protocol):
    def voices(self) -> list[dict[str, Any]]: ...
    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0,
                   language: str | None = None) -> Iterator[Speech]: ...


class SpoofDetector(Backend, Protocol):
    def detect(self, audio: np.ndarray, mode: str = "bank_flex") -> dict[str, Any]: ...


class VoiceProfiler(Backend, Protocol):
    def profile(self, audio: np.ndarray) -> dict[str, dict[str, float]]: ...
    def unavailable(self) -> dict[str, str]: ...


class Generator(Backend, Protocol):
    def generate(self, messages: list[ChatMessage],
                 params: GenerationParams) -> Iterator[Generated] | AsyncIterator[Generated]:
        """Answer pieces as generated, then one piece with the finish reason and usage (llama.cpp: a
        generator that stops when closed; vLLM: an async generator). Too long a prompt: ApiError 400."""
        ...

    def stream(self, messages: list[ChatMessage], max_tokens: int = 256,
               temperature: float = 0.7) -> Iterator[str] | AsyncIterator[str]:
        """Text pieces only."""
        ...
