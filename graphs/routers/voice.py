"""Voice print, anti-spoofing and voice profile API (speech platform family, `/voice/...`).

Verification scores: AS-norm (unitless, impostor trials centre near 0) once the
impostor cohort holds `min_cohort` embeddings, raw cosine before that; every
result carries its `scale` and `threshold` (ACCEPT when score >= threshold).
"""
from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile

from graphs.routers import services
from speechcore.errors import ApiError
from graphs.services import Services
from graphs.voiceprints import Voiceprints, decode_upload, voiceprints
from speechcore.speakers.scoring import Score, voiceprint
from speechcore.speakers.store import UUID_PATTERN, check_name

router = APIRouter(prefix="/voice", tags=["voice"])

SpoofMode = Literal["bank_top_security", "bank_flex", "consumer"]


def _result(upload: UploadFile, s: Score) -> dict:
    return {"file": upload.filename, "score": s.score, "verdict": "ACCEPT" if s.accepted else "REJECT",
            "path": None, "scale": s.scale, "threshold": s.threshold, "cosine": s.cosine,
            "cohort_size": s.cohort_size}


async def _decode_all(files: list[UploadFile], param: str = "files") -> list:
    return [await decode_upload(f, param) for f in files]


@router.post("/register", summary="Register a voice print from reference audio")
async def register(file: UploadFile = File(...), name: str = Form(...), description: str = Form(...),
                   vp: Voiceprints = Depends(voiceprints)):
    name = check_name(name)
    audio = await decode_upload(file)
    speaker, path, _ = await vp.enroll("voice", name, audio, description=description)
    return {"status": "success", "speaker_id": speaker.id, "file_path": path}


@router.post("/verify/{speaker_id}", summary="Verify files against a registered voice print")
async def verify(speaker_id: str = Path(..., pattern=UUID_PATTERN), files: list[UploadFile] = File(...),
                 vp: Voiceprints = Depends(voiceprints)):
    speaker = await vp.speaker(speaker_id)
    tests = await vp.embed_all(await _decode_all(files))
    scores = await vp.verify(voiceprint(speaker.embeddings), tests, exclude=speaker.id)
    return {"speaker_id": speaker.id, "name": speaker.name,
            "reference": speaker.audio_paths[0] if speaker.audio_paths else None,
            "results": [_result(f, s) for f, s in zip(files, scores)]}


@router.post("/verify_with_reference", summary="Verify files against an uploaded reference")
async def verify_with_reference(reference: UploadFile = File(...), files: list[UploadFile] = File(...),
                                vp: Voiceprints = Depends(voiceprints)):
    ref_audio = await decode_upload(reference, "reference")
    enrol, *tests = await vp.embed_all([ref_audio, *await _decode_all(files)])
    scores = await vp.verify(enrol, tests, exclude=None)
    return {"reference_file": reference.filename, "results": [_result(f, s) for f, s in zip(files, scores)]}


@router.post("/anti-spoof", summary="Real human speech or synthetic/replayed, per file")
async def anti_spoof(files: list[UploadFile] = File(...), mode: SpoofMode = Form("bank_flex"),
                     svc: Services = Depends(services)):
    clips = await _decode_all(files)
    verdicts = await asyncio.gather(*(svc.anti_spoof.detect(c, mode) for c in clips))
    return {"mode": mode, "results": [{"file": f.filename, **v} for f, v in zip(files, verdicts)]}


@router.post("/profile", summary="Voice profile: distributions of the properties a real model backs")
async def profile(file: UploadFile = File(...), svc: Services = Depends(services)):
    audio = await decode_upload(file)
    properties, unavailable = await asyncio.gather(svc.voice_profile.profile(audio),
                                                   svc.voice_profile.unavailable())
    return {"file": file.filename, "properties": properties, "unavailable": unavailable}


@router.get("/speakers", summary="Voice prints registered through /voice/register")
async def list_voiceprints(vp: Voiceprints = Depends(voiceprints)):
    return {"speakers": await asyncio.to_thread(vp.db.summaries, "voice")}


@router.delete("/{speaker_id}", summary="Delete a registered voice print, its samples and its audio")
async def delete_voiceprint(speaker_id: str = Path(..., pattern=UUID_PATTERN), vp: Voiceprints = Depends(voiceprints)):
    if not await asyncio.to_thread(vp.db.delete, speaker_id, "voice"):
        raise ApiError(404, "speaker_not_found", f"Speaker '{speaker_id}' not found")
    return {"status": "success", "speaker_id": speaker_id}
