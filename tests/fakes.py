"""In-process stand-ins for the model deployments, for router tests without Ray.

`fake_services()` is the real `graphs.services.Services` facade (readiness
guard, timeouts, cancellation included) over fake handles: each fake answers
the same method names as its deployment with deterministic, inspectable
results computed from the audio it is given (the energy VAD finds loud
stretches; the ASR names the clips it was asked to decode).
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np

from graphs import launch
from graphs.readiness import DeploymentState, Readiness
from graphs.services import Services
from speechcore.schemas import ASRRequest, Segment, Transcript, Word
from speechcore.spec import GraphSpec
from speechcore.vad import FRAME_SAMPLES, speech_regions

SENTENCES = ["The first sentence is here.", "Then a second one follows it.", "And a third ends the clip."]


class Response:
    """Like a DeploymentResponse: awaitable and cancellable."""

    def __init__(self, coro):
        self.task = asyncio.ensure_future(coro)

    def __await__(self):
        return self.task.__await__()

    def cancel(self) -> None:
        self.task.cancel()


class Handle:
    """Like a DeploymentHandle: `handle.method.remote(*args)`; `options(stream=True)` for generators."""

    def __init__(self, impl: Any, stream: bool = False):
        self.impl, self.stream = impl, stream
        self.calls: list[str] = impl.calls if hasattr(impl, "calls") else []

    def options(self, stream: bool = False, **_: Any) -> "Handle":
        return Handle(self.impl, stream)

    def __getattr__(self, method: str):
        fn = getattr(self.impl, method)

        def remote(*args):
            self.calls.append(method)
            return fn(*args) if self.stream else Response(_maybe_await(fn(*args)))

        return SimpleNamespace(remote=remote)


async def _maybe_await(value):
    return await value if asyncio.iscoroutine(value) else value


def info(role: str, name: str, languages: list[str] | str = "multilingual", **extra) -> dict:
    return {"role": role, "name": name, "backend": "fake", "device": "cpu", "path": f"/models/{name}",
            "size_bytes": 1, "languages": languages, "extra": extra}


class EnergyVAD:
    """Speech where 32 ms frames are louder than -40 dBFS."""

    def __init__(self):
        self.calls: list[str] = []

    def regions(self, audio: np.ndarray) -> list[tuple[float, float]]:
        frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
        probs = (np.sqrt((frames ** 2).mean(axis=1)) > 0.01) * 0.9
        return speech_regions(probs, len(audio) / 16000)

    def info(self) -> dict:
        return info("vad", "fake-vad")


class ScriptASR:
    """One segment per clip, three sentences with word timings spread over it."""

    def __init__(self, name: str, languages: list[str] | str):
        self.name, self.languages = name, languages
        self.calls: list[str] = []
        self.requests: list[ASRRequest] = []

    def transcribe(self, request: ASRRequest) -> Transcript:
        self.requests.append(request)
        segments = [_script_segment(i, s, e, request.options.word_timestamps) for i, (s, e) in enumerate(request.clips)]
        return Transcript(" ".join(s.text for s in segments), request.options.language or "en", 0.9,
                          len(request.audio) / 16000, segments, self.name)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        return "en", 0.9

    def info(self) -> dict:
        return info("asr", self.name, self.languages, translate=self.languages != ["en"])


def _script_segment(idx: int, start: float, end: float, with_words: bool) -> Segment:
    tokens = " ".join(SENTENCES).split()
    step = (end - start) / len(tokens)
    words = [Word(" " + w, round(start + i * step, 3), round(start + (i + 0.8) * step, 3), 0.8)
             for i, w in enumerate(tokens)]
    return Segment(idx, start, end, " ".join(SENTENCES), tokens=[1, 2, 3], avg_logprob=-0.2,
                   words=words if with_words else None)


class Embedder:
    """A 16-d 'voiceprint': normalised energies of 16 frequency bands."""

    def embed(self, audio: np.ndarray) -> np.ndarray:
        bands = np.array_split(np.abs(np.fft.rfft(audio[:16000 * 5])), 16)
        v = np.array([b.mean() for b in bands], dtype=np.float32)
        return v / (np.linalg.norm(v) + 1e-12)

    def info(self) -> dict:
        return info("speaker_embedding", "fake-embedding")


class Generic:
    def __init__(self, role: str):
        self.role = role

    def info(self) -> dict:
        return info(self.role, f"fake-{self.role}")

    def voices(self) -> list[dict]:
        return [{"name": "fake-voice", "language": "en", "gender": "female", "sample_rate": 16000,
                 "quality": "medium"}]

    def detect(self, audio: np.ndarray, mode: str) -> dict:
        return {"result": "real", "is_real": True, "score": 0.9, "threshold": 0.5}

    def profile(self, audio: np.ndarray) -> dict:
        return {"gender": {"female": 0.5, "male": 0.5}}

    def unavailable(self) -> dict:
        return {"age": "no model configured"}


def graph_spec() -> GraphSpec:
    """The CPU profile's graph (same deployments and public model names)."""
    return GraphSpec(**launch.load_config("configs/serve_cpu.yaml")["applications"][0]["args"])


def fake_services() -> Services:
    spec = graph_spec()
    impls: dict[str, Any] = {a.deployment: ScriptASR(name, ["en"] if name.endswith(".en") else ["en", "de", "fr"])
                             for name, a in spec.asr.items()}
    impls.update(vad=EnergyVAD(), speaker_embedding=Embedder())
    for role in ("tts", "llm", "anti_spoof", "voice_profile"):
        impls[role] = Generic(role)
    readiness = Readiness("speech", list(spec.model_deployments()))
    for name in readiness.states:
        readiness.states[name] = DeploymentState("HEALTHY", "", 1)
    svc = Services(spec, {name: Handle(impl) for name, impl in impls.items()}, readiness)
    svc.fakes = impls   # type: ignore[attr-defined]
    return svc
