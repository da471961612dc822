"""The synthesis request graph and model listings shared by the gateway and OpenAI families."""
from __future__ import annotations

import numpy as np

from graphs.services import Services
from speechcore.audio import encode_audio, resample
from speechcore.errors import ApiError
from speechcore.registry import load_registry, resolve, size_bytes
from speechcore.settings import get_settings
from speechcore.text import speakable_text, split_text

SPEED_RANGE = (0.25, 4.0)


async def voices(svc: Services, language: str | None = None) -> list[dict]:
    found = await svc.tts.voices()   # 503 with the reason when TTS is not running
    return [v for v in found if not language or v["language"] == language.lower()]


async def synthesize(svc: Services, text: str, voice: str | None, speed: float, fmt: str,
                     sample_rate: int | None = None, max_chars: int | None = None,
                     param: str = "text") -> tuple[bytes, str]:
    """Text -> encoded audio bytes and content type.

    The text is validated once here for every family (speechcore.text) and
    synthesized piece by piece, so no model run grows with the request.
    """
    settings = get_settings()
    text = speakable_text(text, max_chars or settings.tts_max_text_chars, param)
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise ApiError(400, "invalid_speed", f"`speed` must be between {SPEED_RANGE[0]} and {SPEED_RANGE[1]}.",
                       param="speed")
    names = [v["name"] for v in await voices(svc)]
    if voice and voice not in names:
        raise ApiError(404, "voice_not_found", f"Voice {voice!r} not found; available: {names}", param="voice")
    parts: list[np.ndarray] = []
    rate: int | None = None
    for piece in split_text(text, settings.tts_piece_chars):
        async for chunk in svc.tts.synthesize(piece, voice, speed):
            rate = rate or chunk.sample_rate
            parts.append(resample(chunk.audio, chunk.sample_rate, rate))
    if rate is None:
        raise ApiError(400, "empty_text", "The text gave no speech to synthesize.", param=param)
    audio = np.concatenate(parts)
    if sample_rate and sample_rate != rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return encode_audio(audio, rate, fmt)


async def asr_models(svc: Services) -> list[dict]:
    """Every configured ASR model with what is really known about it."""
    registry = load_registry()
    out = []
    for name, spec in svc.spec.asr.items():
        info = await svc.info(spec.deployment) or {}
        entry = registry.get(spec.model)
        languages = info.get("languages") or (entry.languages if entry else "multilingual")
        out.append({"name": name, "description": entry.description if entry else spec.model,
                    "size_bytes": info.get("size_bytes") or size_bytes(resolve(spec.model)),
                    "loaded": svc.readiness.states[spec.deployment].running,
                    "languages": languages if isinstance(languages, list) else [languages],
                    "backend": spec.backend, "default": name == svc.spec.default_asr})
    return out
