"""The synthesis request graph and model listings shared by the gateway, OpenAI and platform families.

Streaming API (also used in-process by voice chat; these names are stable):

- `resolve_voice(svc, speaker_id=, collection_id=, language=, voice=)` -> `Voice`:
  the one routing rule (speechcore.voices.catalog.Catalog.pick): a voice name
  or speaker UUID, else the collection's speaker for `language`, else the best
  voice for `language`, else the default voice. ApiError 404 for an unknown
  speaker, collection or voice name (`param` names the field).
- `stream_speech(svc, text, voice, speed=, sample_rate=24000, language=)`:
  async generator of `Speech` chunks (float32 mono at `sample_rate`, None: the
  voice's own rate), in order, one or more per sentence/clause; the first
  piece is a short clause so audio starts early. The text is validated first
  (ApiError 400 before anything is synthesized). Closing the generator (a
  client gone) stops synthesis after the piece in progress.
- `first_chunk(gen)`: prime a stream so its errors happen before a response starts.
"""
from __future__ import annotations

import asyncio
from contextlib import aclosing
from functools import lru_cache
from typing import AsyncIterator

from graphs.services import Services
from speechcore.audio import StreamEncoder, resample
from speechcore.errors import ApiError
from speechcore.registry import load_registry, resolve, size_bytes
from speechcore.schemas import Speech
from speechcore.settings import get_settings
from speechcore.text import speakable_text, stream_pieces
from speechcore.voices.catalog import Catalog, Voice
from speechcore.voices.collections import CollectionStore, check_uuid

SPEED_RANGE = (0.25, 4.0)


async def voices(svc: Services, language: str | None = None) -> list[dict]:
    found = await svc.tts.voices()   # 503 with the reason when TTS is not running
    return [v for v in found if not language or language.lower() in (v.get("languages") or [v["language"]])]


async def catalog(svc: Services) -> Catalog:
    return Catalog.from_dicts(await voices(svc))


@lru_cache
def collections() -> CollectionStore:
    return CollectionStore(get_settings().data_dir)


async def resolve_voice(svc: Services, speaker_id: str | None = None, collection_id: str | None = None,
                        language: str | None = None, voice: str | None = None) -> Voice:
    """The voice a request speaks with (see the module docstring); ApiError 404 naming what is unknown."""
    langs = None
    if collection_id:
        cid = check_uuid(collection_id, "collection_id")
        langs = (await asyncio.to_thread(collections().get, cid)).langs
    return (await catalog(svc)).pick(speaker_id=speaker_id.lower() if speaker_id else None, collection=langs,
                                     language=language.lower() if language else None, voice=voice)


def check_speed(speed: float) -> float:
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise ApiError(400, "invalid_speed", f"`speed` must be between {SPEED_RANGE[0]} and {SPEED_RANGE[1]}.",
                       param="speed")
    return speed


def checked_text(text: str, max_chars: int | None = None, param: str = "text") -> str:
    return speakable_text(text, max_chars or get_settings().tts_max_text_chars, param)


async def stream_speech(svc: Services, text: str, voice: Voice | None = None, speed: float = 1.0,
                        sample_rate: int | None = 24000, language: str | None = None,
                        max_chars: int | None = None, param: str = "text") -> AsyncIterator[Speech]:
    """Speech chunks for `text` as they are synthesized (see the module docstring)."""
    text, speed = checked_text(text, max_chars, param), check_speed(speed)
    voice = voice or (await catalog(svc)).default
    spoken = False
    for piece in stream_pieces(text, get_settings().tts_piece_chars):
        async with aclosing(svc.tts.synthesize(piece, voice.name, speed, language or voice.language)) as chunks:
            async for chunk in chunks:
                rate = sample_rate or chunk.sample_rate
                spoken = True
                yield Speech(audio=resample(chunk.audio, chunk.sample_rate, rate), sample_rate=rate)
    if not spoken:
        raise ApiError(400, "empty_text", "The text gave no speech to synthesize.", param=param)


async def first_chunk(stream: AsyncIterator[Speech]) -> AsyncIterator[Speech]:
    """`stream` with its first chunk already synthesized: errors (4xx/503) surface here, before a
    response has started, and the returned iterator yields every chunk."""
    first = await anext(stream)

    async def chained() -> AsyncIterator[Speech]:
        yield first
        async for chunk in stream:
            yield chunk
    return chained()


async def encoded(stream: AsyncIterator[Speech], fmt: str, sample_rate: int) -> AsyncIterator[bytes]:
    """Encoded bytes of a speech stream as they are ready (StreamEncoder); non-empty pieces only."""
    encoder = StreamEncoder(fmt, sample_rate)
    try:
        async for chunk in stream:
            data = encoder.encode(chunk.audio)
            if data:
                yield data
    finally:
        await _close(stream)
    tail = encoder.finish()
    if tail:
        yield tail


async def stream_encoded(svc: Services, text: str, voice: Voice, speed: float, fmt: str, sample_rate: int,
                         max_chars: int | None = None, param: str = "text") -> AsyncIterator[bytes]:
    """Encoded audio as synthesis goes; the first piece is synthesized before this returns, so every
    request error (400/404/503) is raised here, before a streaming response has started."""
    stream = await first_chunk(stream_speech(svc, text, voice, speed, sample_rate, max_chars=max_chars,
                                             param=param))
    return encoded(stream, fmt, sample_rate)


async def _close(stream: AsyncIterator[Speech]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


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
