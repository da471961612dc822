"""Speech gateway family: /v1/speech/* REST (seeds/speech-gateway-api.md).

Errors: {"error": {"code", "message"}} with 400/404/413/422/500/503.
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from graphs import speech, transcription
from graphs.routers import services
from graphs.routers.deps import upload_audio
from graphs.services import Services
from speechcore.audio import content_type
from speechcore.errors import ApiError, ErrorFamily, register_family
from speechcore.formats import gateway_word, ms, segment_confidence, transcript_confidence
from speechcore.schemas import TranscribeOptions

router = APIRouter(prefix="/v1/speech", tags=["speech gateway"])


def _error(err: ApiError) -> dict:
    return {"error": {"code": err.code, "message": err.message}}


ERRORS = register_family(ErrorFamily("gateway", _error), router.prefix)


@router.post("/transcribe", summary="Transcribe a complete audio file",
             description="Silence answers 200 with an empty `text` and no `segments`.")
async def transcribe(audio: UploadFile = File(..., description="WAV, FLAC, OGG, MP3 (also m4a, webm, opus)"),
                     language: str | None = Form(None), word_timestamps: bool = Form(False),
                     model: str | None = Form(None), svc: Services = Depends(services)):
    pcm = await upload_audio(audio)
    t, _ = await transcription.transcribe(svc, pcm, model,
                                          TranscribeOptions(language=language, word_timestamps=word_timestamps))
    segments = []
    for s in t.segments:
        seg = {"text": s.text, "start_ms": ms(s.start), "end_ms": ms(s.end), "confidence": segment_confidence(s)}
        if word_timestamps:
            seg["words"] = [gateway_word(w) for w in s.words or []]
        segments.append(seg)
    return {"text": t.text, "confidence": transcript_confidence(t), "language": t.language,
            "duration_ms": ms(t.duration), "segments": segments}


@router.get("/models", summary="List ASR models")
async def models(svc: Services = Depends(services)):
    return {"models": await speech.asr_models(svc)}


class SynthesizeRequest(BaseModel):
    text: str = Field(..., description="Text to synthesize")
    voice: str | None = Field(None, description="Voice name (GET /v1/speech/voices); default voice if omitted")
    speed: float = 1.0
    format: Literal["wav", "mp3", "ogg", "raw"] = "wav"


@router.post("/synthesize", summary="Text to speech; the body is the audio, streamed from the first sentence",
             description="wav streams with a header of unknown length (0xFFFFFFFF sizes); raw is s16le mono at "
                         "the voice's sample rate (`GET /v1/speech/voices`).",
             response_class=StreamingResponse, responses={200: {"content": {"audio/wav": {}}}})
async def synthesize(body: SynthesizeRequest, svc: Services = Depends(services)):
    voice = await speech.resolve_voice(svc, voice=body.voice)
    audio = await speech.stream_encoded(svc, body.text, voice, body.speed, body.format, voice.sample_rate)
    return StreamingResponse(audio, media_type=content_type(body.format))


@router.get("/voices", summary="List TTS voices")
async def voices(language: str | None = Query(None), svc: Services = Depends(services)):
    return {"voices": [{k: v[k] for k in ("name", "language", "gender", "sample_rate", "quality")}
                       for v in await speech.voices(svc, language)]}
