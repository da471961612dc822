"""Speech platform family: POST /transcribe (seeds/voice-platform-asr-tts-chat-webrtc.md)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, UploadFile

from graphs import transcription
from graphs.routers import services
from graphs.routers.deps import upload_audio
from graphs.services import Services
from speechcore.schemas import TranscribeOptions

router = APIRouter(tags=["speech platform"])


@router.post("/transcribe", summary="Transcribe an audio file (wav, mp3, flac, ogg, m4a, webm)",
             description="Silence answers 200 with an empty `text` and no `segments`.")
async def transcribe(file: UploadFile = File(...), language: str | None = Form(None),
                     model: str | None = Form(None, description="ASR model name; default: the server's"),
                     svc: Services = Depends(services)):
    audio = await upload_audio(file)
    t, took = await transcription.transcribe(svc, audio, model, TranscribeOptions(language=language))
    return {"filename": file.filename, "text": t.text, "language": t.language,
            "segments": [{"id": s.id, "start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
                          "avg_logprob": round(s.avg_logprob, 4), "no_speech_prob": round(s.no_speech_prob, 4)}
                         for s in t.segments],
            "duration": round(t.duration, 3), "processing_time": round(took, 3)}
