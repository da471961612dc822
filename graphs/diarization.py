"""The diarized-transcription request graph: audio -> (transcript with words, who spoke when) -> dialogues.

Shared by `/transcribe-with-property` and the job worker; takes decoded audio,
never an HTTP type. Transcription and diarization run side by side on the
same VAD regions' deployments: window embeddings go through the batched
`speaker_embedding` deployment, decodes through the ASR bulk lane. With
`SPEECH_DIARIZATION_PIPELINE` set (GPU profile) a pyannote.audio pipeline
gives the turns instead; speaker embeddings for voiceprint matching still
come from the speaker-embedding deployment, so they compare with enrolled
voices.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from graphs import transcription
from graphs.services import Services
from speechcore.audio import SAMPLE_RATE
from speechcore.pipelines.diarization import (Diarization, DiarizationParams, Dialogue, Turn, diarize,
                                              dialogues, windows)
from speechcore.schemas import Transcript, TranscribeOptions
from speechcore.settings import get_settings


@dataclass
class Diarized:
    transcript: Transcript
    diarization: Diarization
    dialogues: list[Dialogue]


def params_for(svc: Services, min_speakers: int = 0, max_speakers: int = 0) -> DiarizationParams:
    return DiarizationParams.from_options(svc.spec.role("speaker_embedding").options, min_speakers, max_speakers)


async def transcribe_diarized(svc: Services, audio: np.ndarray, language: str | None,
                              params: DiarizationParams, patient: bool = False) -> Diarized:
    """`patient`: a background job, which waits for a full ASR lane instead of failing (429)."""
    options = TranscribeOptions(language=language, word_timestamps=True)
    (transcript, _), diarization = await asyncio.gather(
        transcription.transcribe(svc, audio, None, options, sentences=True, patient=patient),
        who_spoke_when(svc, audio, params))
    return Diarized(transcript, diarization, dialogues(transcript.segments, diarization.turns))


async def who_spoke_when(svc: Services, audio: np.ndarray, params: DiarizationParams) -> Diarization:
    pipeline = get_settings().diarization_pipeline
    if not pipeline:
        return await diarize(audio, await svc.vad.regions(audio), svc.speaker_embedding.embed, params)
    turns, overlaps = await asyncio.to_thread(_pyannote(pipeline), audio, params)
    return Diarization(turns, await label_embeddings(svc, audio, turns, params), overlaps)


async def label_embeddings(svc: Services, audio: np.ndarray, turns: list[Turn],
                           params: DiarizationParams) -> dict[str, np.ndarray]:
    """Per label: the normalised mean embedding of windows over its turns (not overlapped ones)."""
    out: dict[str, np.ndarray] = {}
    for speaker in sorted({t.speaker for t in turns}):
        spans = windows([(t.start, t.end) for t in turns if t.speaker == speaker and not t.overlap], params)
        clips = [audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in spans[:32]]
        if clips:
            mean = np.mean(await asyncio.gather(*(svc.speaker_embedding.embed(c) for c in clips)), axis=0)
            out[speaker] = (mean / (np.linalg.norm(mean) + 1e-12)).astype(np.float32)
    return out


@lru_cache
def _pyannote(path: str) -> Any:
    from speechcore.backends.pyannote_diarization import PyannoteDiarization   # GPU profile only
    return PyannoteDiarization(path)


