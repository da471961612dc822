"""Typed results passed between deployments (plain dataclasses: they pickle through Ray)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Lane = Literal["interactive", "bulk"]
"""Interactive work (live partials and finals) is served before bulk work (uploads, jobs)."""


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    words: list[Word] | None = None


@dataclass
class Transcript:
    text: str
    language: str
    language_probability: float
    duration: float
    segments: list[Segment]
    model: str = ""


@dataclass
class TranscribeOptions:
    """What a caller may choose per request; everything else is the backend's config."""
    language: str | None = None
    task: str = "transcribe"          # or "translate" (to English)
    word_timestamps: bool = False
    prompt: str | None = None
    temperature: float = 0.0
    beam_size: int = 5
    fast_window: bool = False
    """Encode only the speech (plus the model's `fast_window_pad_s`), not a padded 30 s window:
    faster, a little less robust; live partials ask for it. Ignored by models without the option."""

    def batch_key(self) -> tuple[object, ...]:
        """Requests with equal keys can share one batched decoder call."""
        return (self.language, self.task, self.word_timestamps, self.prompt,
                self.temperature, self.beam_size, self.fast_window)


@dataclass
class ASRRequest:
    audio: np.ndarray                  # float32 16 kHz mono
    clips: list[tuple[float, float]]   # speech regions (seconds) to decode
    options: TranscribeOptions
    lane: Lane = "interactive"


@dataclass
class Speech:
    """Synthesized speech: float32 mono samples."""
    audio: np.ndarray
    sample_rate: int


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass
class GenerationParams:
    """Sampling controls every LLM backend honours (OpenAI's names and meanings)."""
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass
class Generated:
    """One streamed piece of an answer; the last piece has no text and carries the finish reason and usage."""
    text: str = ""
    finish_reason: str | None = None     # "stop" | "length" on the last piece
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ModelInfo:
    role: str
    name: str
    backend: str
    device: str
    path: str
    size_bytes: int = 0
    languages: list[str] | str = "multilingual"
    extra: dict[str, Any] = field(default_factory=dict)
