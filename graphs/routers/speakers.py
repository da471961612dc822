"""Speaker recognition API (reachy family): enroll, list, delete, identify, verify.

Errors are `{"detail": ...}`. Scores are cosine similarities of the configured
embedding model; `threshold` is that model's calibrated cosine threshold.
The policies live in the speaker graph (graphs/voiceprints.py).
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, File, Query, UploadFile

from graphs.routers.deps import upload_clip, voiceprints
from graphs.voiceprints import Voiceprints
from speechcore.speakers.store import check_name

router = APIRouter(tags=["speakers"])


@router.get("/speakers", summary="Names of the enrolled speakers")
async def list_speakers(vp: Voiceprints = Depends(voiceprints)):
    return {"speakers": await asyncio.to_thread(vp.db.names)}


@router.post("/speakers/{name}/enroll", summary="Enroll a sample (enrolling a name again adds a sample)")
async def enroll(name: str, file: UploadFile = File(...), vp: Voiceprints = Depends(voiceprints)):
    name = check_name(name)
    _, _, embedding = await vp.enroll("reachy", name, await upload_clip(file))
    return {"message": f"Speaker '{name}' enrolled successfully", "embedding_size": int(embedding.shape[0])}


@router.delete("/speakers/{name}", summary="Delete a speaker, its samples and its audio")
async def delete(name: str, vp: Voiceprints = Depends(voiceprints)):
    await vp.delete_named(name)
    return {"message": f"Speaker '{name}' deleted successfully"}


@router.post("/identify", summary="Who is speaking, among the enrolled speakers")
async def identify(file: UploadFile = File(...), vp: Voiceprints = Depends(voiceprints)):
    await vp.require_enrolled()   # before the upload is read, as the reference does
    d = await vp.identify(await upload_clip(file))
    return {"identified": d.accepted, "speaker": d.speaker, "confidence": d.confidence, "threshold": d.threshold}


@router.post("/verify", summary="Does the audio match the named speaker")
async def verify(name: str = Query(...), file: UploadFile = File(...), vp: Voiceprints = Depends(voiceprints)):
    speaker = await vp.speaker_by_name(name)   # 404 before the upload is read
    d = await vp.verify_cosine(speaker, await upload_clip(file))
    return {"verified": d.accepted, "speaker": name, "confidence": d.confidence, "threshold": d.threshold}
