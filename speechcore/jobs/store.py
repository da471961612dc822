"""The job store: job records and results behind one interface, on SQLite or PostgreSQL.

One SQLAlchemy Core schema serves both: `sqlite:///...` (the embedded default,
one machine; WAL mode so ingress and workers in several processes share it)
and `postgresql+psycopg://...` (a cluster, where ingress and workers run on
different nodes). Statuses move queued -> converting -> denoising ->
transcribing -> identifying -> completed | failed; every write is one
transaction, and a status change never overwrites a terminal status, so a job
failed by a restart cannot be revived by a worker that was still finishing it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from speechcore.sql import driver_errors_as, engine_for

SCHEMA_VERSION = 1
TERMINAL = ("completed", "failed")
IN_FLIGHT = ("queued", "converting", "denoising", "transcribing", "identifying")

metadata = sa.MetaData()
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("audio_path", sa.Text, nullable=False, default=""),
    sa.Column("params", sa.Text, nullable=False, default="{}"),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("error", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
schema_version = sa.Table("job_schema", metadata, sa.Column("version", sa.Integer, primary_key=True))


@dataclass
class Job:
    id: str
    status: str
    filename: str
    sha256: str
    audio_path: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    error: str | None = None
    result: str | None = None
    """The stored result JSON as text (parsed by the caller: a corrupt one is a 409, not a crash)."""
    created_at: float = 0.0
    updated_at: float = 0.0


class StoreError(RuntimeError):
    """The store could not be read or written (the HTTP edge answers 503)."""


class JobStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)
        self._migrate()

    def _migrate(self) -> None:
        with self._guard():
            for attempt in range(len(metadata.tables) + 1):
                try:
                    metadata.create_all(self.engine, checkfirst=True)
                    break
                except sa.exc.DBAPIError:   # another process created a table at the same moment: go on
                    if attempt == len(metadata.tables):
                        raise
        with self._guard(), self._tx() as db:
            version = db.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if version is None:
                db.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise StoreError(f"job database is schema {version}, newer than this code ({SCHEMA_VERSION})")

    def close(self) -> None:
        self.engine.dispose()

    def _tx(self) -> Any:
        return self.engine.begin()

    # --- writes -----------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        now = time.time()
        job.created_at = job.updated_at = now
        with self._guard(), self._tx() as db:
            db.execute(jobs.insert().values(
                id=job.id, status=job.status, filename=job.filename, sha256=job.sha256,
                audio_path=job.audio_path, params=json.dumps(job.params), progress=job.progress,
                error=job.error, result=job.result, created_at=now, updated_at=now))
        return job

    def set_status(self, job_id: str, status: str, progress: float | None = None, error: str | None = None) -> bool:
        """Move a job that is still in flight; False when it is already terminal (or unknown)."""
        values: dict[str, Any] = {"status": status, "updated_at": time.time(), "error": error}
        if progress is not None:
            values["progress"] = progress
        with self._guard(), self._tx() as db:
            done = db.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(IN_FLIGHT))
                              .values(**values))
        return bool(done.rowcount)

    def complete(self, job_id: str, result: dict[str, Any]) -> bool:
        with self._guard(), self._tx() as db:
            done = db.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(IN_FLIGHT)).values(
                status="completed", progress=1.0, result=json.dumps(result, ensure_ascii=False),
                updated_at=time.time()))
        return bool(done.rowcount)

    def save_result(self, job_id: str, result: dict[str, Any]) -> None:
        """Replace a completed job's result (manual speaker edits)."""
        with self._guard(), self._tx() as db:
            db.execute(jobs.update().where(jobs.c.id == job_id).values(
                result=json.dumps(result, ensure_ascii=False), updated_at=time.time()))

    def fail_in_flight(self, error: str) -> int:
        """Every job not finished becomes failed with `error` (run once when the service starts)."""
        with self._guard(), self._tx() as db:
            return int(db.execute(jobs.update().where(jobs.c.status.in_(IN_FLIGHT)).values(
                status="failed", error=error, updated_at=time.time())).rowcount)

    def delete(self, job_id: str) -> bool:
        with self._guard(), self._tx() as db:
            return bool(db.execute(jobs.delete().where(jobs.c.id == job_id)).rowcount)

    # --- reads ------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._guard(), self.engine.connect() as db:
            row = db.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return _job(row) if row else None

    def find_reusable(self, sha256: str) -> Job | None:
        """A job of the same bytes that is completed (preferred) or still in flight: dedup target."""
        query = (sa.select(jobs).where(jobs.c.sha256 == sha256, jobs.c.status.in_(("completed", *IN_FLIGHT)))
                 .order_by(sa.case((jobs.c.status == "completed", 0), else_=1), jobs.c.created_at))
        with self._guard(), self.engine.connect() as db:
            row = db.execute(query).mappings().first()
        return _job(row) if row else None

    def completed(self) -> list[Job]:
        """Completed jobs, newest first."""
        query = sa.select(jobs).where(jobs.c.status == "completed").order_by(jobs.c.created_at.desc())
        with self._guard(), self.engine.connect() as db:
            return [_job(r) for r in db.execute(query).mappings()]

    def recent(self, limit: int = 100) -> list[Job]:
        """Every job, newest first, without results (the web UI's job list)."""
        cols = [c for c in jobs.c if c.name != "result"]
        query = sa.select(*cols).order_by(jobs.c.created_at.desc()).limit(limit)
        with self._guard(), self.engine.connect() as db:
            return [_job(r) for r in db.execute(query).mappings()]

    def _guard(self) -> Any:
        """Database driver errors become StoreError (the edge answers 503, without the driver's text)."""
        return driver_errors_as(StoreError)


def _job(row: Any) -> Job:
    data = dict(row)
    data["params"] = json.loads(data.get("params") or "{}")
    data.setdefault("result", None)
    return Job(**data)
