"""OpenAI-compatible audio and model endpoints, usable with the official `openai` client.

Behaves as OpenAI's API for the same request: `whisper-1` means the server's
default model; word timestamps need response_format=verbose_json; silence
gives an empty text (not an error).
"""
from __future__ import annotations

import base64
import json
import math
from typing import AsyncIterator, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from graphs import speech, transcription
from graphs.routers import services
from graphs.routers.deps import upload_audio
from graphs.services import Services
from speechcore.audio import content_type
from speechcore.errors import ApiError, ErrorFamily, register_family
from speechcore.formats import to_srt, to_vtt
from speechcore.languages import NAMES
from speechcore.schemas import Transcript, TranscribeOptions
from speechcore.voices.catalog import Voice, voice_id

router = APIRouter(prefix="/v1", tags=["openai compatible"])

_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "requests"}   # 429: as OpenAI


def openai_type(status: int) -> str:
    """OpenAI's error `type`: a client-error type for every 4xx, `server_error` otherwise."""
    return _ERROR_TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "server_error")


def _error(err: ApiError) -> dict:
    return {"error": {"message": err.message, "type": openai_type(err.status), "param": err.param, "code": err.code}}


ERRORS = register_family(ErrorFamily("openai", _error), "/v1/audio", "/v1/models", "/v1/chat")

ALIASES = {"whisper-1": None}   # None = the server's default ASR model
FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
SENTENCE_FORMATS = ("srt", "vtt", "verbose_json")   # one segment per sentence, not per decode chunk
TTS_FORMATS = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "pcm"}


def _model(name: str) -> str | None:
    return ALIASES[name] if name in ALIASES else name


async def _run(svc: Services, file: UploadFile, model: str, options: TranscribeOptions, response_format: str,
               granularities: list[str]):
    if response_format not in FORMATS:
        raise ApiError(400, "invalid_value", f"response_format must be one of {list(FORMATS)}",
                       param="response_format")
    unknown = set(granularities) - {"word", "segment"}
    if unknown:
        raise ApiError(400, "invalid_value", f"Unknown timestamp_granularities {sorted(unknown)}",
                       param="timestamp_granularities")
    if "word" in granularities and response_format != "verbose_json":
        raise ApiError(400, "invalid_value", "timestamp_granularities=[\"word\"] requires "
                       "response_format=verbose_json", param="timestamp_granularities")
    if not 0.0 <= options.temperature <= 1.0:
        raise ApiError(400, "invalid_value", "temperature must be between 0 and 1", param="temperature")
    options.word_timestamps = "word" in granularities
    audio = await upload_audio(file)
    t, _ = await transcription.transcribe(svc, audio, _model(model), options,
                                          sentences=response_format in SENTENCE_FORMATS)
    return _render(t, options.task, response_format, granularities)


def _render(t: Transcript, task: str, fmt: str, granularities: list[str]):
    if fmt == "text":
        return PlainTextResponse(t.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(to_srt(t.segments))
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(t.segments), media_type="text/vtt")
    usage = {"type": "duration", "seconds": math.ceil(t.duration)}
    if fmt == "json":
        return {"text": t.text, "usage": usage}
    body = {"task": task, "language": NAMES.get(t.language, t.language), "duration": round(t.duration, 2),
            "text": t.text}
    if "segment" in granularities or not granularities:
        body["segments"] = [{"id": s.id, "seek": 0, "start": s.start, "end": s.end, "text": s.text,
                             "tokens": s.tokens, "temperature": s.temperature, "avg_logprob": s.avg_logprob,
                             "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob}
                            for s in t.segments]
    if "word" in granularities:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                         for s in t.segments for w in s.words or []]
    return {**body, "usage": usage}


@router.post("/audio/transcriptions", summary="OpenAI-compatible transcription")
async def transcriptions(file: UploadFile = File(...), model: str = Form("whisper-1"),
                         language: str | None = Form(None), prompt: str | None = Form(None),
                         temperature: float = Form(0.0), response_format: str = Form("json"),
                         timestamp_granularities: list[str] = Form([], alias="timestamp_granularities[]"),
                         svc: Services = Depends(services)):
    options = TranscribeOptions(language=language, prompt=prompt, temperature=temperature)
    return await _run(svc, file, model, options, response_format, timestamp_granularities)


@router.post("/audio/translations", summary="OpenAI-compatible translation to English")
async def translations(file: UploadFile = File(...), model: str = Form("whisper-1"),
                       prompt: str | None = Form(None), temperature: float = Form(0.0),
                       response_format: str = Form("json"), svc: Services = Depends(services)):
    options = TranscribeOptions(task="translate", prompt=prompt, temperature=temperature)
    return await _run(svc, file, model, options, response_format, [])


OPENAI_TEXT_CHARS = 4096
# OpenAI's voice names are explicit aliases of the server's default voice (None), never a fallback:
# any other name must be one of GET /v1/speech/voices, else 400.
OPENAI_VOICES = dict.fromkeys(("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova",
                               "onyx", "sage", "shimmer", "verse"))
OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


class SpeechRequest(BaseModel):
    model: str = Field("tts-1", description=f"{', '.join(OPENAI_TTS_MODELS)} or the server's TTS model")
    input: str = Field(..., max_length=OPENAI_TEXT_CHARS)
    voice: str | None = Field(None, description="An OpenAI voice name (alias of the default voice), "
                                                "a voice of GET /v1/audio/voices or a speaker UUID")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, description="0.25 to 4.0")
    stream_format: Literal["audio", "sse"] = Field("audio", description="audio: the body is the audio, "
                                                   "streamed; sse: speech.audio.delta events, then speech.audio.done")


async def _tts_voice(svc: Services, body: SpeechRequest) -> Voice:
    """The server voice for an OpenAI request; 400 for an unknown model or voice."""
    if body.model not in (*OPENAI_TTS_MODELS, svc.spec.role("tts").model):
        raise ApiError(400, "model_not_found", f"Unknown TTS model {body.model!r}; use one of "
                                               f"{[*OPENAI_TTS_MODELS, svc.spec.role('tts').model]}.", param="model")
    voices = await speech.catalog(svc)
    if body.voice is None or body.voice in OPENAI_VOICES:
        return voices.default
    try:
        return voices.named(body.voice)
    except ApiError:
        raise ApiError(400, "voice_not_found", f"Unknown voice {body.voice!r}; use an OpenAI voice name "
                                               f"({', '.join(OPENAI_VOICES)}) or one of {sorted(voices.by_name)}.",
                       param="voice") from None


OPENAI_RATE = 24000   # OpenAI's speech is 24 kHz (pcm: s16le mono)


@router.post("/audio/speech", summary="OpenAI-compatible text to speech, streamed from the first sentence",
             response_class=StreamingResponse,
             responses={200: {"content": {"audio/mpeg": {}, "text/event-stream": {}}}})
async def audio_speech(body: SpeechRequest, svc: Services = Depends(services)):
    voice = await _tts_voice(svc, body)
    fmt = TTS_FORMATS[body.response_format]
    audio = await speech.stream_encoded(svc, body.input, voice, body.speed, fmt, OPENAI_RATE,
                                        max_chars=OPENAI_TEXT_CHARS, param="input")
    if body.stream_format == "sse":
        return StreamingResponse(_sse(audio, body.input), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return StreamingResponse(audio, media_type=content_type(fmt))


async def _sse(audio: AsyncIterator[bytes], text: str) -> AsyncIterator[str]:
    """OpenAI's speech events: base64 audio deltas, then done with usage (tokens counted as words)."""
    try:
        async for data in audio:
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except ApiError as err:
        yield _event({"type": "error", **_error(err)})
        return
    words = len(text.split())
    yield _event({"type": "speech.audio.done", "usage": {"input_tokens": words, "output_tokens": 0,
                                                         "total_tokens": words}})


def _event(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


@router.get("/audio/voices", summary="Voices for OpenAI-compatible clients (Open WebUI's convention)")
async def audio_voices(language: str | None = None, svc: Services = Depends(services)):
    return {"voices": [{"id": v["name"], "name": v["name"], "language": v["language"], "gender": v["gender"],
                        "speaker_id": voice_id(v["engine"], v["name"])} for v in await speech.voices(svc, language)]}


def _model_ids(svc: Services) -> list[str]:
    return list(dict.fromkeys([*svc.spec.asr, *ALIASES, svc.spec.role("tts").model, svc.spec.role("llm").model]))


def _model_object(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "speech-serve"}


@router.get("/models", summary="OpenAI-compatible model list")
async def list_models(svc: Services = Depends(services)):
    return {"object": "list", "data": [_model_object(n) for n in _model_ids(svc)]}


@router.get("/models/{model_id:path}", summary="OpenAI-compatible model lookup")
async def get_model(model_id: str, svc: Services = Depends(services)):
    if model_id not in _model_ids(svc):
        raise ApiError(404, "model_not_found", f"The model '{model_id}' does not exist", param="model")
    return _model_object(model_id)
