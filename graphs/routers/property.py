"""Speech platform family: POST /transcribe-with-property (diarized dialogues)."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, File, Form, UploadFile

from graphs.diarization import params_for, transcribe_diarized
from graphs.routers import services
from graphs.routers.deps import upload_audio
from graphs.services import Services
from speechcore.errors import ApiError
from speechcore.settings import get_settings

router = APIRouter(tags=["speech platform"])


@router.post("/transcribe-with-property", summary="Transcribe with speakers: who said what, when")
async def transcribe_with_property(file: UploadFile = File(...), language: str | None = Form(None),
                                   min_speakers: int = Form(0), max_speakers: int = Form(0),
                                   svc: Services = Depends(services)):
    started = time.perf_counter()
    timeout = get_settings().ffmpeg_timeout_sec
    try:
        audio = await asyncio.wait_for(upload_audio(file), timeout)
    except asyncio.TimeoutError:
        raise ApiError(504, "conversion_timeout", f"Audio conversion timed out after {timeout:g} s") from None
    found = await transcribe_diarized(svc, audio, language or None, params_for(svc, min_speakers, max_speakers))
    return {"filename": file.filename, "language": found.transcript.language,
            "dialogues": [{"speaker": d.speaker, "start": round(d.start, 3), "end": round(d.end, 3),
                           "text": d.text, "overlap": any(t.overlap and t.start < d.end and t.end > d.start
                                                          for t in found.diarization.turns),
                           "words": [{"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
                                     for w in d.words]} for d in found.dialogues],
            "speakers": found.diarization.speakers,
            "processing_time": round(time.perf_counter() - started, 3)}
