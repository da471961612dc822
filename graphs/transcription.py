"""The file-transcription request graph: decoded audio -> VAD regions -> batched ASR.

Shared by every HTTP family (platform, gateway, OpenAI); each router only
formats the Transcript this returns.
"""
from __future__ import annotations

import asyncio
import time

import numpy as np
from fastapi import UploadFile

from graphs.services import ASR, Services
from speechcore.audio import decode_audio
from speechcore.errors import ApiError
from speechcore.languages import normalize_language
from speechcore.schemas import ASRRequest, Transcript, TranscribeOptions
from speechcore.settings import get_settings
from speechcore.vad import merge_for_decoding

MAX_CHUNK_S = 28.0   # Whisper's window is 30 s; leave room for padding
MERGE_GAP_S = 0.5    # regions closer than this are decoded as one chunk


async def read_audio(upload: UploadFile) -> np.ndarray:
    """Decode an uploaded file (already spooled to disk in chunks by the multipart parser)."""
    return await asyncio.to_thread(decode_audio, upload.file, 16000, get_settings().max_audio_seconds)


async def transcribe(svc: Services, audio: np.ndarray, model: str | None,
                     options: TranscribeOptions) -> tuple[Transcript, float]:
    """(transcript, processing seconds). Silence yields an empty transcript; callers decide."""
    started = time.perf_counter()
    asr = svc.asr(model)
    options.language = normalize_language(options.language)
    await _check_model_supports(svc, asr, model, options)
    regions = await svc.vad.regions(audio)
    chunks = merge_for_decoding(regions, MAX_CHUNK_S, MERGE_GAP_S)
    transcript = await asr.transcribe(ASRRequest(audio, chunks, options))
    return transcript, time.perf_counter() - started


async def _check_model_supports(svc: Services, asr: ASR, model: str | None,
                                options: TranscribeOptions) -> None:
    info = await asr.info()
    if not info:
        return  # not ready: the call answers 503 next
    name = model or svc.spec.default_asr
    languages = info["languages"]
    if options.language and isinstance(languages, list) and options.language not in languages:
        hint = f"supported: {', '.join(languages)}" if len(languages) < 10 else "use an ISO 639-1 code such as en, de, fr"
        raise ApiError(400, "unsupported_language",
                       f"Language {options.language!r} is not supported by model {name!r} ({hint}).",
                       param="language")
    if options.task == "translate" and not info.get("extra", {}).get("translate"):
        raise ApiError(400, "unsupported_task", f"Model {name!r} cannot translate; choose a multilingual model.",
                       param="model")
