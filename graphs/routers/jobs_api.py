"""Job-based transcription with voiceprints: /api/* (seeds/voscript-job-api.md, contracts §4).

Errors are `{"detail": message}`; ids are checked by their patterns in the
path (422), so nothing unvalidated reaches the store or the disk.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import FileResponse, Response

from graphs import jobs as service_module
from graphs.jobs import JobParams, JobService, check_denoiser, iso, public_id, store_id, upload_limit_message
from graphs.middleware import UPLOAD_LIMITS
from graphs.routers import services
from graphs.services import Services
from speechcore.errors import ApiError
from speechcore.jobs import results
from speechcore.jobs.matching import spread
from speechcore.jobs.store import StoreError
from speechcore.settings import get_settings
from speechcore.speakers.store import UUID_PATTERN, Speaker, check_name

router = APIRouter(prefix="/api", tags=["jobs (VoScript)"])
JobId = Path(..., pattern=results.JOB_ID)
SpeakerId = Path(..., pattern=results.VOICEPRINT_ID)
UPLOAD_LIMITS["/api/transcribe"] = lambda: (get_settings().job_max_upload_bytes, get_settings().job_body_timeout_s,
                                            upload_limit_message(get_settings().job_max_upload_bytes))


async def jobs(svc: Services = Depends(services)) -> JobService:
    return service_module.service(svc)


async def _call(fn: Any, *args: Any) -> Any:
    """A store call off the event loop; a store that cannot answer is 503."""
    try:
        return await asyncio.to_thread(fn, *args)
    except StoreError as exc:
        raise ApiError(503, "store_unavailable", "The job store is unavailable") from exc


@router.post("/transcribe", summary="Submit a transcription job (diarized, voiceprints matched)")
async def transcribe(file: UploadFile = File(...), language: str | None = Form(None),
                     min_speakers: int = Form(0), max_speakers: int = Form(0),
                     denoise_model: str | None = Form(None), snr_threshold: float | None = Form(None),
                     no_repeat_ngram_size: int | None = Form(None), js: JobService = Depends(jobs)):
    if denoise_model is not None:
        check_denoiser(denoise_model)
    else:
        check_denoiser(get_settings().denoise_model)
    params = JobParams(language or None, max(0, min_speakers), max(0, max_speakers), denoise_model,
                       snr_threshold, no_repeat_ngram_size)
    return await js.submit(file.file, file.filename, params)


@router.get("/jobs/{job_id}", summary="Poll a job")
async def job(job_id: str = JobId, js: JobService = Depends(jobs)):
    found = await _call(js.db.get, job_id)
    if found is None:
        raise ApiError(404, "job_not_found", "Job not found")
    out: dict[str, Any] = {"id": found.id, "status": found.status, "filename": found.filename,
                           "progress": round(found.progress, 2)}
    if found.status == "failed":
        out["error"] = found.error or "failed"
    if found.status == "completed":
        out["result"] = _parse(found.result)
    return out


@router.get("/jobs", summary="Recent jobs with their status (for the web UI)")
async def recent_jobs(js: JobService = Depends(jobs)):
    return [{"id": j.id, "status": j.status, "filename": j.filename, "progress": round(j.progress, 2),
             "created_at": iso(j.created_at), **({"error": j.error} if j.error else {})}
            for j in await _call(js.db.recent)]


@router.get("/transcriptions", summary="Completed transcriptions")
async def transcriptions(js: JobService = Depends(jobs)):
    out = []
    for j in await _call(js.db.completed):
        try:
            out.append(results.summary(_parse(j.result)))
        except ApiError:
            continue   # a corrupt result is reported by GET /api/transcriptions/{id}
    return out


@router.get("/transcriptions/{job_id}", summary="One transcription's full result")
async def transcription(job_id: str = JobId, js: JobService = Depends(jobs)):
    return await _result(js, job_id)


@router.get("/transcriptions/{job_id}/audio", summary="The original upload")
async def audio(job_id: str = JobId, js: JobService = Depends(jobs)):
    found = await _call(js.db.get, job_id)
    path = js.root / found.audio_path if found and found.audio_path else None
    if path is None or not path.is_file():
        raise ApiError(404, "audio_not_found", "Audio not found")
    return FileResponse(path, filename=found.filename if found else None)


@router.get("/export/{job_id}", summary="Export a transcription (srt, vtt, txt, json)")
async def export(job_id: str = JobId, format: str = Query("srt"), js: JobService = Depends(jobs)):
    if format not in results.EXPORT_FORMATS:
        raise ApiError(400, "invalid_format", f"format must be one of {', '.join(results.EXPORT_FORMATS)}",
                       param="format")
    body, media = results.export(await _result(js, job_id), format)
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{job_id}.{format}"'})


@router.put("/transcriptions/{job_id}/segments/{seg_id}/speaker", summary="Reassign one segment's speaker")
async def segment_speaker(job_id: str = JobId, seg_id: int = Path(...), speaker_name: str = Form(...),
                          speaker_id: str | None = Form(None, pattern=results.VOICEPRINT_ID),
                          js: JobService = Depends(jobs)):
    if speaker_id is not None and await _voiceprint(js, speaker_id) is None:
        raise ApiError(404, "speaker_not_found", "Voiceprint not found")
    result = await _result(js, job_id)
    if not results.set_segment_speaker(result, seg_id, check_name(speaker_name), speaker_id):
        raise ApiError(404, "segment_not_found", "Segment not found")
    await _call(js.db.save_result, job_id, result)
    return {"ok": True}


# --- voiceprints ------------------------------------------------------------------------------

@router.get("/voiceprints", summary="Every voiceprint of the server (all API families)")
async def voiceprints(js: JobService = Depends(jobs)):
    speakers = await asyncio.to_thread(lambda: [s for f in ("reachy", "voice")
                                                for s in js.voices.speakers(f, js.model)])
    counts = await asyncio.to_thread(lambda: {s.id: js.voices.sample_count(s.id) for s in speakers})
    return [_voiceprint_body(s, counts[s.id]) for s in sorted(speakers, key=lambda s: s.created_at)]


@router.get("/voiceprints/{speaker_id}", summary="One voiceprint")
async def voiceprint(speaker_id: str = SpeakerId, js: JobService = Depends(jobs)):
    found = await _voiceprint(js, speaker_id)
    if found is None:
        raise ApiError(404, "speaker_not_found", "Voiceprint not found")
    return _voiceprint_body(found, await asyncio.to_thread(js.voices.sample_count, found.id))


@router.put("/voiceprints/{speaker_id}/name", summary="Rename a voiceprint")
async def rename(speaker_id: str = SpeakerId, name: str = Form(...), js: JobService = Depends(jobs)):
    if await _voiceprint(js, speaker_id) is None or not await asyncio.to_thread(
            js.voices.rename, store_id(speaker_id), name):
        raise ApiError(404, "speaker_not_found", "Voiceprint not found")
    return {"ok": True}


@router.delete("/voiceprints/{speaker_id}", summary="Delete a voiceprint")
async def delete(speaker_id: str = SpeakerId, js: JobService = Depends(jobs)):
    if await _voiceprint(js, speaker_id) is None or not await asyncio.to_thread(
            js.voices.delete, store_id(speaker_id)):
        raise ApiError(404, "speaker_not_found", "Voiceprint not found")
    return {"ok": True}


@router.post("/voiceprints/enroll", summary="Enroll a transcription's speaker label as a voiceprint")
async def enroll(tr_id: str = Form(..., pattern=results.JOB_ID), speaker_label: str = Form(..., pattern=results.LABEL),
                 speaker_name: str = Form(...), speaker_id: str | None = Form(None, pattern=results.VOICEPRINT_ID),
                 js: JobService = Depends(jobs)):
    path = js.root / "transcriptions" / tr_id / f"emb_{speaker_label}.npy"
    try:
        embedding = await asyncio.to_thread(np.load, path)
    except (OSError, ValueError):
        raise ApiError(404, "embedding_not_found", f"No embedding for {speaker_label} in {tr_id}") from None
    name = check_name(speaker_name)
    target = await _voiceprint(js, speaker_id) if speaker_id else None
    if target is None:
        target = await asyncio.to_thread(_by_name, js, name)
    speaker, _ = await asyncio.to_thread(lambda: js.voices.add_sample(
        family=target.family if target else "voice", model=js.model, embedding=embedding.astype(np.float32),
        audio=None, name=target.name if target else name, speaker_id=target.id if target else None))
    js.enrolled_at = time.time()
    return {"action": "updated" if target else "created", "speaker_id": public_id(speaker.id)}


@router.post("/voiceprints/rebuild-cohort", summary="Rebuild the AS-norm cohort from every transcription now")
async def rebuild_cohort(js: JobService = Depends(jobs)):
    size, skipped = await asyncio.to_thread(js.rebuild_cohort, True)
    return {"cohort_size": size, "skipped": skipped, "saved_to": "transcriptions/asnorm_cohort.npy"}


# --- helpers ----------------------------------------------------------------------------------

def _parse(text: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text or "")
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
        raise ApiError(409, "corrupt_result", "The stored result is corrupt")
    return data


async def _result(js: JobService, job_id: str) -> dict[str, Any]:
    found = await _call(js.db.get, job_id)
    if found is None or found.status != "completed":
        raise ApiError(404, "transcription_not_found", "Transcription not found")
    return _parse(found.result)


async def _voiceprint(js: JobService, public: str | None) -> Speaker | None:
    """The voiceprint behind a `spk_<uuid>` id (None when unknown or not such an id)."""
    sid = store_id(public or "")
    if not re.match(UUID_PATTERN, sid):
        return None
    return await asyncio.to_thread(js.voices.get, sid, js.model)


def _by_name(js: JobService, name: str) -> Speaker | None:
    for family in ("reachy", "voice"):
        for s in js.voices.speakers(family, js.model):
            if s.name == name:
                return s
    return None


def _voiceprint_body(s: Speaker, samples: int) -> dict[str, Any]:
    return {"id": public_id(s.id), "name": s.name, "sample_count": samples,
            "sample_spread": round(spread(s.embeddings), 4), "created_at": iso(s.created_at),
            "updated_at": iso(s.updated_at)}
