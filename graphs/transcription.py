"""The file-transcription request graph: audio array -> VAD regions -> planned ASR requests -> one Transcript.

Shared by every HTTP family (platform, gateway, OpenAI); each router only
formats the Transcript this returns. It takes decoded audio, never an HTTP
type; planning and merging are the pure steps of speechcore.pipelines, which
a job worker or a Ray Data stage calls the same way.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, Coroutine

import numpy as np

from graphs.services import ASR, Services
from speechcore.audio import SAMPLE_RATE
from speechcore.errors import ApiError
from speechcore.languages import normalize_language
from speechcore.pipelines.segments import sentence_segments
from speechcore.pipelines.transcription import (asr_requests, decode_options, merge_transcripts, plan_limits,
                                                plan_transcription, speech_sample)
from speechcore.schemas import ASRRequest, Transcript, TranscribeOptions


async def transcribe(svc: Services, audio: np.ndarray, model: str | None, options: TranscribeOptions,
                     sentences: bool = False, patient: bool = False) -> tuple[Transcript, float]:
    """(transcript, processing seconds). Silence yields an empty transcript (no segments).

    `sentences`: segments cut at sentence punctuation by word timestamps (for
    subtitles and verbose listings) rather than one per decode chunk.
    `patient` (background jobs): requests go one at a time and wait out a full
    bulk lane (429) instead of failing, so a long file never exceeds admission.
    """
    started = time.perf_counter()
    asr = svc.asr(model)
    name = model or svc.spec.default_asr
    options.language = normalize_language(options.language)
    info = await check_model_supports(asr, name, options)
    plan = plan_transcription(await svc.vad.regions(audio), plan_limits(info.get("extra", {})))
    decode = decode_options(plan, replace(options, word_timestamps=options.word_timestamps or sentences))
    if len(plan) > 1 and not decode.language:   # one language for the whole recording, detected once
        decode.language, _ = await asr.detect_language(speech_sample(audio, plan))
    requests = [replace(r, lane="bulk") for r in asr_requests(audio, plan, decode)]
    parts = await (_in_turn(asr, requests) if patient else _all([asr.transcribe(r) for r in requests]))
    transcript = merge_transcripts(plan, parts, len(audio) / SAMPLE_RATE, options, name)
    if sentences:
        transcript.segments = sentence_segments(transcript.segments)
    if not options.word_timestamps:
        transcript.segments = [replace(s, words=None) for s in transcript.segments]
    return transcript, time.perf_counter() - started


async def _all(calls: list[Coroutine[Any, Any, Transcript]]) -> list[Transcript]:
    """Every call's result; when one fails (or the caller goes away) the others are cancelled too."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        raise


async def _in_turn(asr: ASR, requests: list[ASRRequest]) -> list[Transcript]:
    """Each request after the previous one, retrying a refusal of a full lane after its Retry-After."""
    out = []
    for request in requests:
        while True:
            try:
                out.append(await asr.transcribe(request))
                break
            except ApiError as err:
                if err.status != 429:
                    raise
                await asyncio.sleep(min(err.retry_after_s or 5.0, 30.0))
    return out


async def check_model_supports(asr: ASR, name: str, options: TranscribeOptions) -> dict[str, Any]:
    """400 for a language or task the model `name` cannot do (files and live sessions alike); the model's
    info ({} while it is not ready: the call answers 503 next)."""
    info = await asr.info()
    if not info:
        return {}
    languages = info["languages"]
    if options.language and isinstance(languages, list) and options.language not in languages:
        hint = f"supported: {', '.join(languages)}" if len(languages) < 10 else "use an ISO 639-1 code such as en, de, fr"
        raise ApiError(400, "unsupported_language",
                       f"Language {options.language!r} is not supported by model {name!r} ({hint}).",
                       param="language")
    if options.word_timestamps and info.get("extra", {}).get("word_timestamps") is False:
        raise ApiError(400, "unsupported_word_timestamps",
                       f"Model {name!r} gives no word timestamps; choose another model (the default "
                       f"gives them) or leave word timestamps off.", param="word_timestamps")
    if options.task == "translate" and not info.get("extra", {}).get("translate"):
        raise ApiError(400, "unsupported_task", f"Model {name!r} cannot translate; choose a multilingual model.",
                       param="model")
    return info
