"""What routers share at the HTTP edge: upload decoding and the graph dependencies.

Uploads stop here: graphs get float32 16 kHz mono arrays (and names), never
an `UploadFile`.
"""
from __future__ import annotations

import asyncio

import numpy as np
from fastapi import Depends, UploadFile

from graphs.routers import services
from graphs.services import Services
from graphs.voiceprints import Clip, Voiceprints, store
from speechcore.audio import SAMPLE_RATE, decode_audio
from speechcore.errors import AudioError
from speechcore.settings import get_settings


async def upload_audio(upload: UploadFile, max_seconds: float | None = None) -> np.ndarray:
    """Decode an upload (already spooled to disk in chunks by the multipart parser) off the event loop;
    longer than `max_seconds` (default: the transcription limit) is 413 while it decodes."""
    limit = max_seconds or get_settings().max_audio_seconds
    return await asyncio.to_thread(decode_audio, upload.file, SAMPLE_RATE, limit)


async def upload_clip(upload: UploadFile, param: str = "file") -> Clip:
    """A voice upload as a named clip (at most `max_voice_seconds`: a voice needs seconds, not hours);
    decoding errors name the file."""
    name = upload.filename or param
    try:
        return Clip(name, await upload_audio(upload, get_settings().max_voice_seconds))
    except AudioError as err:
        raise AudioError(err.code, f"{name}: {err.message}", err.status) from err


async def upload_clips(uploads: list[UploadFile], param: str = "files") -> list[Clip]:
    return [await upload_clip(u, param) for u in uploads]


def voiceprints(svc: Services = Depends(services)) -> Voiceprints:
    """FastAPI dependency: the speaker graph on this replica's store."""
    return Voiceprints(svc, store())
