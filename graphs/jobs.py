"""The job service: uploads -> stored jobs -> background diarized transcription -> results and voiceprints.

Routers call this with plain values (a binary file, a name, typed params);
the worker steps (convert, denoise, transcribe + diarize, identify) run off
the request path, at most `SPEECH_JOB_WORKERS` jobs at once per ingress
replica: decode and denoise as Ray tasks (graphs.offload: Ray's worker
processes, `SPEECH_JOB_TASK_CPUS` each), transcription and embeddings on the
model deployments' bulk lane (live traffic goes first). The ingress only
awaits them.
State lives in the job store (SQLite or PostgreSQL, speechcore.jobs.store),
files under the storage dir: `uploads/<id>_<name>` and
`transcriptions/<id>/emb_<label>.npy`, plus the AS-norm cohort. Jobs that were
in flight when the service stopped are marked failed when it starts again.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from graphs.diarization import Diarized, params_for, transcribe_diarized
from graphs.offload import in_ray_task
from graphs.services import Services
from graphs.voiceprints import store as voiceprint_store
from speechcore.audio import decode_audio
from speechcore.errors import ApiError, AudioError, UploadTooLarge
from speechcore.jobs import results
from speechcore.jobs.matching import Candidate, Cohort, MatchPolicy, match
from speechcore.jobs.store import Job, JobStore, StoreError
from speechcore.pipelines.diarization import Dialogue
from speechcore.settings import get_settings
from speechcore.spec import EmbedderOptions
from speechcore.speakers.store import VoiceprintStore

log = logging.getLogger("speech.jobs")
RESTARTED = "Process restarted while job was in progress"
DENOISERS = ("none", "noisereduce", "deepfilternet")
CHUNK = 1024 * 1024


@dataclass
class JobParams:
    language: str | None = None
    min_speakers: int = 0
    max_speakers: int = 0
    denoise_model: str | None = None
    snr_threshold: float | None = None
    no_repeat_ngram_size: int | None = None

    def effective(self) -> dict[str, Any]:
        """What the job really used (the result's `params`)."""
        s = get_settings()
        out: dict[str, Any] = {
            "language": self.language or "auto", "denoise_model": self.denoise_model or s.denoise_model,
            "snr_threshold": self.snr_threshold if self.snr_threshold is not None else s.denoise_snr_threshold,
            "voiceprint_threshold": s.voiceprint_threshold, "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers}
        if self.no_repeat_ngram_size is not None:
            out["no_repeat_ngram_size"] = self.no_repeat_ngram_size if self.no_repeat_ngram_size >= 3 else 0
        return out


def check_denoiser(name: str) -> None:
    """400 for an unknown denoiser or one whose library is not installed here."""
    if name not in DENOISERS:
        raise ApiError(400, "invalid_denoise_model", f"denoise_model must be one of {', '.join(DENOISERS)}",
                       param="denoise_model")
    module = {"noisereduce": "noisereduce", "deepfilternet": "df"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        raise ApiError(400, "denoise_model_unavailable",
                       f"denoise_model {name!r} is unavailable on this server (its library is not installed)",
                       param="denoise_model")


def safe_filename(name: str | None) -> str:
    """The last path component, reduced to safe characters (the stored name and the file suffix)."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "audio"
    return base[-120:]


def new_job_id() -> str:
    return f"tr_{datetime.now(timezone.utc):%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


@dataclass
class JobService:
    svc: Services
    db: JobStore
    root: Path
    voices: VoiceprintStore
    cohort: Cohort
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(max(1, get_settings().job_workers)))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    enrolled_at: float = 0.0
    cohort_generation: tuple[int, int] = (0, 0)

    # --- submitting ---------------------------------------------------------------------------

    async def submit(self, source: BinaryIO, filename: str | None, params: JobParams) -> dict[str, Any]:
        """Store the upload (hashing it), dedup by SHA-256, queue the job: `{id, status[, deduplicated]}`."""
        name = safe_filename(filename)
        job_id = new_job_id()
        rel = f"uploads/{job_id}_{name}"
        digest = await asyncio.to_thread(self._save, source, self.root / rel)
        try:
            existing = await asyncio.to_thread(self.db.find_reusable, digest)
            if existing is not None:
                (self.root / rel).unlink(missing_ok=True)
                return {"id": existing.id, "status": existing.status if existing.status == "completed"
                        else "queued", "deduplicated": True}
            job = Job(job_id, "queued", name, digest, rel, params=_asdict(params))
            await asyncio.to_thread(self.db.create, job)
        except StoreError as exc:
            (self.root / rel).unlink(missing_ok=True)
            raise ApiError(503, "store_unavailable", "Failed to persist job state") from exc
        try:
            self.start(job_id)
        except RuntimeError as exc:
            raise ApiError(503, "worker_unavailable", "Failed to start background transcription") from exc
        return {"id": job_id, "status": "queued"}

    @staticmethod
    def _save(source: BinaryIO, dest: Path) -> str:
        """Copy in chunks while hashing; over the job upload limit -> 413 and the partial file removed."""
        limit = get_settings().job_max_upload_bytes
        dest.parent.mkdir(parents=True, exist_ok=True)
        sha, size = hashlib.sha256(), 0
        try:
            with open(dest, "wb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise UploadTooLarge(limit, upload_limit_message(limit))
                    sha.update(chunk)
                    out.write(chunk)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return sha.hexdigest()

    def start(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- running ------------------------------------------------------------------------------

    async def _run(self, job_id: str) -> None:
        async with self.slots:
            try:
                await self.run(job_id)
            except Exception as exc:   # every failure ends as a failed job with a message fit for a client
                message = exc.message if isinstance(exc, ApiError) else "Transcription failed"
                log.warning("job %s failed: %s", job_id, exc)
                await asyncio.to_thread(self._fail, job_id, message)

    def _fail(self, job_id: str, message: str) -> None:
        try:
            self.db.set_status(job_id, "failed", error=message)
        except StoreError:
            log.error("job %s: could not record its failure", job_id)

    async def _step(self, job_id: str, status: str, progress: float) -> None:
        if not await asyncio.to_thread(self.db.set_status, job_id, status, progress):
            raise ApiError(409, "job_gone", "The job was stopped")

    async def run(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.db.get, job_id)
        if job is None or job.status != "queued":
            return
        params = JobParams(**job.params)
        effective = {**params.effective(), "voiceprint_threshold": self.policy().threshold}
        await self._step(job_id, "converting", 0.05)
        audio = await self.convert(self.root / job.audio_path)
        if effective["denoise_model"] != "none":
            await self._step(job_id, "denoising", 0.15)
            audio = await in_ray_task(denoise, audio, effective["denoise_model"], cpus=get_settings().job_task_cpus)
        await self._step(job_id, "transcribing", 0.25)
        diarized = await transcribe_diarized(self.svc, audio, params.language,
                                             params_for(self.svc, params.min_speakers, params.max_speakers),
                                             patient=True)
        await self._step(job_id, "identifying", 0.85)
        result = await asyncio.to_thread(self.build_result, job, diarized, effective)
        await asyncio.to_thread(self.db.complete, job_id, result)

    async def convert(self, path: Path) -> np.ndarray:
        """Decode the upload (16 kHz mono) within FFMPEG_TIMEOUT_SEC; empty or not audio: a clear error."""
        timeout = get_settings().ffmpeg_timeout_sec
        try:
            audio = await in_ray_task(decode_audio, str(path), cpus=get_settings().job_task_cpus, timeout=timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, "conversion_timeout",
                           f"Audio conversion timed out after {timeout:g} s (FFMPEG_TIMEOUT_SEC)") from None
        except AudioError as exc:
            raise ApiError(exc.status, exc.code, f"Could not read the upload as audio: {exc.message}") from None
        if not len(audio):
            raise ApiError(400, "empty_audio", "The upload contains no audio")
        return audio

    def build_result(self, job: Job, diarized: Diarized, params: dict[str, Any]) -> dict[str, Any]:
        """Match each label's embedding to the voiceprints, save the embeddings, shape the result."""
        language = diarized.transcript.language or params["language"]
        found = clean_dialogues(diarized.dialogues, language, params.get("no_repeat_ngram_size", 0))
        job_dir = self.root / "transcriptions" / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        candidates, policy = self.candidates(), self.policy()
        speaker_map: dict[str, dict[str, Any]] = {}
        for lbl, emb in diarized.diarization.embeddings.items():
            np.save(job_dir / f"emb_{lbl}.npy", emb)
            m = match(emb, candidates, self.cohort.matrix, policy)
            speaker_map[lbl] = {"matched_id": m.id and public_id(m.id), "matched_name": m.name,
                                "similarity": m.similarity, "embedding_key": lbl}
        segments = results.segments_from(found, speaker_map)
        result: dict[str, Any] = {
            "id": job.id, "filename": job.filename, "created_at": iso(job.created_at), "status": "completed",
            "language": language, "segments": segments, "speaker_map": speaker_map,
            "unique_speakers": results.unique_speakers(segments), "params": params,
            "alignment": {"status": "succeeded" if any("words" in s for s in segments) else "skipped",
                          "language": language, "model": None, "model_source": "whisper_word_timestamps",
                          "cache_only": False},
            "artifacts": artifacts(sorted(speaker_map))}
        if not speaker_map:
            result["warning"] = "no_speakers_detected"
        return result

    # --- voiceprints --------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.svc.spec.role("speaker_embedding").model

    def policy(self) -> MatchPolicy:
        options = EmbedderOptions.model_validate({k: v for k, v in self.svc.spec.role("speaker_embedding")
                                                 .options.items() if k in EmbedderOptions.model_fields})
        # VOICEPRINT_THRESHOLD when set; else the embedding model's calibrated cosine threshold (the reference's
        # 0.75 is Resemblyzer's scale, ERes2Net's is 0.35), with the reference's floor 0.15 below it.
        threshold = get_settings().voiceprint_threshold or options.cosine_threshold
        return MatchPolicy(threshold=threshold, floor=threshold - 0.15, asnorm_threshold=options.as_norm_threshold,
                           min_cohort=options.min_cohort, top_n=options.as_norm_top_n)

    def candidates(self) -> list[Candidate]:
        return [Candidate(s.id, s.name, s.embeddings) for family in ("reachy", "voice")
                for s in self.voices.speakers(family, self.model)]

    def job_dirs(self) -> list[Path]:
        return [d for d in (self.root / "transcriptions").glob("tr_*") if d.is_dir()]

    def rebuild_cohort(self, force: bool) -> tuple[int, int]:
        return self.cohort.rebuild(self.job_dirs(), force)

    async def cohort_daemon(self, every_s: float = 60.0, settle_s: float = 30.0) -> None:
        """Rebuild the cohort once enrolments have settled (`settle_s` after the latest), never shrinking it."""
        while True:
            await asyncio.sleep(every_s)
            stamp = (len(self.job_dirs()), int(self.enrolled_at))
            if stamp != self.cohort_generation and time.time() - self.enrolled_at >= settle_s:
                try:
                    await asyncio.to_thread(self.rebuild_cohort, False)
                    self.cohort_generation = stamp
                except OSError:
                    log.warning("cohort rebuild failed")


def upload_limit_message(limit: int) -> str:
    return f"Upload exceeds MAX_UPLOAD_BYTES ({limit} bytes)"


def public_id(speaker_id: str) -> str:
    """A voiceprint's id in the job API's format (`spk_<uuid>`)."""
    return f"spk_{speaker_id}"


def store_id(public: str) -> str:
    return public[4:] if public.startswith("spk_") else public


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def artifacts(labels: list[str]) -> dict[str, Any]:
    stable = [{"name": "result", "filename": "result.json", "role": "primary_result",
               "media_type": "application/json", "required_for_result": True}]
    stable += [{"name": "speaker_embedding", "filename": f"emb_{lbl}.npy", "role": "speaker_embedding",
                "media_type": "application/octet-stream", "required_for_result": False, "speaker_label": lbl}
               for lbl in labels]
    return {"manifest_version": "artifact_manifest.v1", "stable": stable, "optional": [], "experimental": []}


def clean_dialogues(found: list[Dialogue], language: str, ngram: int) -> list[Dialogue]:
    """Mandarin in Simplified Chinese; repeated n-grams collapsed when `no_repeat_ngram_size` >= 3."""
    out = []
    for d in found:
        words = d.words
        if ngram >= 3 and words:
            words = [words[i] for i in results.collapse_repeats([w.word for w in words], ngram)]
        text = "".join(w.word for w in words).strip() if words else d.text
        if ngram >= 3 and not words:
            tokens = text.split()
            text = " ".join(tokens[i] for i in results.collapse_repeats(tokens, ngram))
        if language == "zh":
            import zhconv
            text = zhconv.convert(text, "zh-cn")
            words = [type(w)(zhconv.convert(w.word, "zh-cn"), w.start, w.end, w.probability) for w in words]
        out.append(Dialogue(d.speaker, d.start, d.end, text, words))
    return out


def denoise(audio: np.ndarray, model: str) -> np.ndarray:
    if model == "noisereduce":
        import noisereduce

        return np.asarray(noisereduce.reduce_noise(y=audio, sr=16000), dtype=np.float32)
    raise ApiError(400, "denoise_model_unavailable", f"denoise_model {model!r} is unavailable on this server")


def _asdict(params: JobParams) -> dict[str, Any]:
    return {k: v for k, v in params.__dict__.items()}


@lru_cache
def service_root() -> Path:
    s = get_settings()
    root = s.storage_dir or s.data_dir / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def database_url() -> str:
    s = get_settings()
    if s.database_url:
        return s.database_url
    s.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{s.data_dir / 'jobs.sqlite3'}"


_service: JobService | None = None


def service(svc: Services) -> JobService:
    """This replica's job service, created on first use: failing jobs left in flight by a previous run."""
    global _service
    if _service is None:
        root = service_root()
        try:
            db = JobStore(database_url())
            failed = db.fail_in_flight(RESTARTED)
        except StoreError as exc:
            raise ApiError(503, "store_unavailable", "The job store is unavailable") from exc
        if failed:
            log.warning("%d job(s) were in flight at the last stop: marked failed", failed)
        _service = JobService(svc, db, root, voiceprint_store(), Cohort(root / "transcriptions" / "asnorm_cohort.npy"))
        if not len(_service.cohort):
            _service.rebuild_cohort(False)
        task = asyncio.get_running_loop().create_task(_service.cohort_daemon())
        _service.tasks.add(task)
    return _service
