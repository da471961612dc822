"""Voice print, anti-spoofing and voice profile API (speech platform family, `/voice/...`).

Verification scores: AS-norm (unitless, impostor trials centre near 0) once the
impostor cohort holds `min_cohort` embeddings, raw cosine before that; every
result carries its `scale` and `threshold` (ACCEPT when score >= threshold).
Scoring and the anti-spoof fan-out live in graphs/voiceprints.py.
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile

from graphs import voiceprints as graph
from graphs.routers import services
from graphs.routers.deps import upload_clip, upload_clips, voiceprints
from graphs.services import Services
from graphs.voiceprints import Clip, Voiceprints
from speechcore.speakers.scoring import Score
from speechcore.speakers.store import UUID_PATTERN, check_name

router = APIRouter(prefix="/voice", tags=["voice"])

SpoofMode = Literal["bank_top_security", "bank_flex", "consumer"]


def _result(clip: Clip, s: Score, path: str | None = None) -> dict:
    return {"file": clip.name, "score": s.score, "verdict": "ACCEPT" if s.accepted else "REJECT",
            "path": path, "scale": s.scale, "threshold": s.threshold, "cosine": s.cosine,
            "cohort_size": s.cohort_size}


@router.post("/register", summary="Register a voice print from reference audio")
async def register(file: UploadFile = File(...), name: str = Form(...), description: str = Form(...),
                   vp: Voiceprints = Depends(voiceprints)):
    name = check_name(name)
    speaker, path, _ = await vp.enroll("voice", name, await upload_clip(file), description=description)
    return {"status": "success", "speaker_id": speaker.id, "file_path": path}


@router.post("/verify/{speaker_id}", summary="Verify files against a registered voice print")
async def verify(speaker_id: str = Path(..., pattern=UUID_PATTERN), files: list[UploadFile] = File(...),
                 vp: Voiceprints = Depends(voiceprints)):
    speaker = await vp.speaker(speaker_id)
    clips = await upload_clips(files)
    scores = await vp.verify(speaker, clips)
    paths = await vp.keep_tested(speaker, clips)
    return {"speaker_id": speaker.id, "name": speaker.name,
            "reference": speaker.audio_paths[0] if speaker.audio_paths else None,
            "results": [_result(c, s, p) for c, s, p in zip(clips, scores, paths)]}


@router.post("/verify_with_reference", summary="Verify files against an uploaded reference")
async def verify_with_reference(reference: UploadFile = File(...), files: list[UploadFile] = File(...),
                                vp: Voiceprints = Depends(voiceprints)):
    ref = await upload_clip(reference, "reference")
    clips = await upload_clips(files)
    scores = await vp.verify_with_reference(ref, clips)
    return {"reference_file": reference.filename, "results": [_result(c, s) for c, s in zip(clips, scores)]}


@router.post("/anti-spoof", summary="Real human speech or synthetic/replayed, per file")
async def anti_spoof(files: list[UploadFile] = File(...), mode: SpoofMode = Form("bank_flex"),
                     svc: Services = Depends(services)):
    clips = await upload_clips(files)
    verdicts = await graph.anti_spoof(svc, clips, mode)
    return {"mode": mode, "results": [{"file": c.name, **v} for c, v in zip(clips, verdicts)]}


@router.post("/profile", summary="Voice profile: distributions of the properties a real model backs")
async def profile(file: UploadFile = File(...), svc: Services = Depends(services)):
    properties, unavailable = await graph.voice_profile(svc, await upload_clip(file))
    return {"file": file.filename, "properties": properties, "unavailable": unavailable}


@router.get("/speakers", summary="Voice prints registered through /voice/register")
async def list_voiceprints(vp: Voiceprints = Depends(voiceprints)):
    return {"speakers": await vp.registered()}


@router.delete("/{speaker_id}", summary="Delete a registered voice print, its samples and its audio")
async def delete_voiceprint(speaker_id: str = Path(..., pattern=UUID_PATTERN), vp: Voiceprints = Depends(voiceprints)):
    await vp.delete_registered(speaker_id)
    return {"status": "success", "speaker_id": speaker_id}
