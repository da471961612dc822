"""Speaker recognition API (reachy family): enroll, list, delete, identify, verify.

Errors are `{"detail": ...}`. Scores are cosine similarities of the configured
embedding model; `threshold` is that model's calibrated cosine threshold.
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, File, Query, UploadFile

from graphs.voiceprints import Voiceprints, decode_upload, voiceprints
from speechcore.errors import ApiError
from speechcore.speakers.scoring import cosine, voiceprint
from speechcore.speakers.store import check_name

router = APIRouter(tags=["speakers"])


@router.get("/speakers", summary="Names of the enrolled speakers")
async def list_speakers(vp: Voiceprints = Depends(voiceprints)):
    return {"speakers": await asyncio.to_thread(vp.db.names)}


@router.post("/speakers/{name}/enroll", summary="Enroll a sample (enrolling a name again adds a sample)")
async def enroll(name: str, file: UploadFile = File(...), vp: Voiceprints = Depends(voiceprints)):
    name = check_name(name)
    audio = await decode_upload(file)
    _, _, embedding = await vp.enroll("reachy", name, audio)
    return {"message": f"Speaker '{name}' enrolled successfully", "embedding_size": int(embedding.shape[0])}


@router.delete("/speakers/{name}", summary="Delete a speaker, its samples and its audio")
async def delete(name: str, vp: Voiceprints = Depends(voiceprints)):
    sid = await asyncio.to_thread(vp.db.id_by_name, name)
    if sid is None or not await asyncio.to_thread(vp.db.delete, sid):
        raise ApiError(404, "speaker_not_found", f"Speaker '{name}' not found")
    return {"message": f"Speaker '{name}' deleted successfully"}


@router.post("/identify", summary="Who is speaking, among the enrolled speakers")
async def identify(file: UploadFile = File(...), vp: Voiceprints = Depends(voiceprints)):
    if not await asyncio.to_thread(vp.db.count, "reachy"):
        raise ApiError(400, "no_speakers", "No speakers enrolled. Please enroll speakers first.")
    embedding = await vp.embed(await decode_upload(file))
    who, best = await vp.identify(embedding)
    threshold = vp.thresholds.cosine
    identified = who is not None and best >= threshold
    return {"identified": identified, "speaker": who.name if identified else None,
            "confidence": round(best, 4), "threshold": threshold}


@router.post("/verify", summary="Does the audio match the named speaker")
async def verify(name: str = Query(...), file: UploadFile = File(...), vp: Voiceprints = Depends(voiceprints)):
    speaker = await vp.speaker_by_name(name)
    embedding = await vp.embed(await decode_upload(file))
    similarity = cosine(voiceprint(speaker.embeddings), embedding)
    threshold = vp.thresholds.cosine
    return {"verified": similarity >= threshold, "speaker": name, "confidence": round(similarity, 4),
            "threshold": threshold}
