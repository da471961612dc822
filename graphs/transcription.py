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
from speechcore.pipelines.transcription import asr_requests, merge_transcripts, plan_transcription, speech_sample
from speechcore.schemas import Transcript, TranscribeOptions


async def transcribe(svc: Services, audio: np.ndarray, model: str | None, options: TranscribeOptions,
                     sentences: bool = False) -> tuple[Transcript, float]:
    """(transcript, processing seconds). Silence yields an empty transcript (no segments).

    `sentences`: segments cut at sentence punctuation by word timestamps (for
    subtitles and verbose listings) rather than one per decode chunk.
    """
    started = time.perf_counter()
    asr = svc.asr(model)
    name = model or svc.spec.default_asr
    options.language = normalize_language(options.language)
    await check_model_supports(asr, name, options)
    plan = plan_transcription(await svc.vad.regions(audio))
    decode = replace(options, word_timestamps=options.word_timestamps or sentences)
    if len(plan) > 1 and not decode.language:   # one language for the whole recording, detected once
        decode.language, _ = await asr.detect_language(speech_sample(audio, plan))
    parts = await _all([asr.transcribe(replace(r, lane="bulk")) for r in asr_requests(audio, plan, decode)])
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


async def check_model_supports(asr: ASR, name: str, options: TranscribeOptions) -> None:
    """400 for a language or task the model `name` cannot do (files and live sessions alike)."""
    info = await asr.info()
    if not info:
        return  # not ready: the call answers 503 next
    languages = info["languages"]
    if options.language and isinstance(languages, list) and options.language not in languages:
        hint = f"supported: {', '.join(languages)}" if len(languages) < 10 else "use an ISO 639-1 code such as en, de, fr"
        raise ApiError(400, "unsupported_language",
                       f"Language {options.language!r} is not supported by model {name!r} ({hint}).",
                       param="language")
    if options.task == "translate" and not info.get("extra", {}).get("translate"):
        raise ApiError(400, "unsupported_task", f"Model {name!r} cannot translate; choose a multilingual model.",
                       param="model")
