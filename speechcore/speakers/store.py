"""Voiceprint store: speakers, every enrolment sample's embedding and audio, the impostor cohort.

One SQLAlchemy Core schema (speechcore.speakers.schema) on the server's
database URL: SQLite in WAL mode under the data dir by default, PostgreSQL on
a cluster (the same database as the job store), so every replica and node
shares one voiceprint library. Every write is one serialised transaction
(`BEGIN IMMEDIATE` on SQLite, a transaction-level advisory lock on
PostgreSQL), so enrolments from several replicas wait for each other instead
of losing samples or racing on a name. Audio files live under
`<root>/speakers/<speaker uuid>/`; ids are validated as UUIDs before any path
is built, so no request can reach outside that folder.
"""
from __future__ import annotations

import re
import shutil
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event

from speechcore.audio import wav_bytes
from speechcore.errors import ApiError
from speechcore.settings import Settings
from speechcore.speakers.schema import SCHEMA_VERSION, cohort, metadata, samples, schema_version, speakers
from speechcore.sql import driver_errors_as, engine_for, is_sqlite

WRITE_LOCK = 0x766F6963   # PostgreSQL advisory lock key of voiceprint writes ("voic")

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
NAME_PATTERN = r"^[^\x00-\x1f/\\]{1,128}$"
FAMILIES = ("reachy", "voice")


@dataclass
class Speaker:
    id: str
    family: str
    name: str
    description: str
    created_at: float
    updated_at: float
    embeddings: list[np.ndarray] = field(default_factory=list)
    audio_paths: list[str] = field(default_factory=list)


def check_speaker_id(speaker_id: str) -> str:
    if not re.match(UUID_PATTERN, speaker_id or ""):
        raise ApiError(422, "invalid_speaker_id", f"speaker_id must be a lowercase UUID, got {speaker_id!r}",
                       param="speaker_id")
    return speaker_id


def check_name(name: str) -> str:
    """The name in NFKC form; ApiError 422 for a name that is empty, too long or confusable.

    Refused: control and format characters (zero-width spaces and joiners,
    bidi overrides), slashes, and letters from look-alike scripts mixed in one
    name (a Cyrillic "а" inside a Latin name), so two speakers can never
    show the same name.
    """
    name = unicodedata.normalize("NFKC", name or "")
    if not re.match(NAME_PATTERN, name) or not name.strip():
        raise ApiError(422, "invalid_name", "Speaker names are 1-128 characters, without control "
                                            "characters or slashes.", param="name")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in name):
        raise ApiError(422, "invalid_name", "Speaker names must not contain invisible, format or "
                                            "unassigned characters.", param="name")
    scripts = {_script(c) for c in name if unicodedata.category(c).startswith("L")}
    if len(scripts) > 1 and not any(scripts <= ok for ok in _SCRIPT_MIXES):
        raise ApiError(422, "invalid_name", f"Speaker names must not mix look-alike scripts "
                                            f"({', '.join(sorted(scripts)).lower()}).", param="name")
    return name


def check_description(description: str) -> str:
    """At most 1000 characters of text: no NUL or other control characters except tab and newlines
    (PostgreSQL text cannot hold a NUL; the embedded store must refuse what the cluster's would)."""
    if len(description) > 1000 or any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in description):
        raise ApiError(422, "invalid_description", "Descriptions are at most 1000 characters, without control "
                                                   "characters.", param="description")
    return description


# Scripts that are legitimately written together (Japanese, Korean with Hanja, both with Latin).
_SCRIPT_MIXES = ({"HAN", "HIRAGANA", "KATAKANA", "LATIN"}, {"HAN", "HANGUL", "LATIN"})


def _script(c: str) -> str:
    """The Unicode script of a letter, from its name (LATIN, CYRILLIC, GREEK, CJK -> HAN ...)."""
    word = unicodedata.name(c, "UNKNOWN").split(" ")[0]
    return {"CJK": "HAN", "KATAKANA-HIRAGANA": "KATAKANA", "HALFWIDTH": "KATAKANA"}.get(word, word)


def _blob(embedding: np.ndarray) -> bytes:
    array = np.asarray(embedding, dtype="<f4")
    if not np.isfinite(array).all():   # one NaN would make every later score of the store NaN
        raise ApiError(422, "invalid_embedding", "The audio gave no usable voiceprint (non-finite embedding).")
    return array.tobytes()


def _finite(blobs: Iterable[bytes]) -> list[np.ndarray]:
    """Stored embeddings that are usable (skips any non-finite row written before it was refused)."""
    return [a for a in (_array(b) for b in blobs) if np.isfinite(a).all()]


def _array(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


class StoreUnavailable(ApiError):
    """The voiceprint database could not be read or written (503, without the driver's text)."""

    def __init__(self, kind: str):
        super().__init__(503, "store_unavailable", "The voiceprint store is unavailable; try again later.")
        self.kind = kind


class VoiceprintStore:
    def __init__(self, root: str | Path, url: str | None = None):
        """Audio under `root`; the database at `url` (default: SQLite `root/voiceprints.sqlite3`)."""
        self.root = Path(root)
        self.audio_root = self.root / "speakers"
        self.audio_root.mkdir(parents=True, exist_ok=True)
        self.url = url or f"sqlite:///{self.root / 'voiceprints.sqlite3'}"
        self.sqlite = is_sqlite(self.url)
        self.engine = engine_for(self.url)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_manual_transactions)
        self._migrate()

    @classmethod
    def from_settings(cls, settings: Settings) -> VoiceprintStore:
        """The server's store: on `database_url` when set (shared with the job store), audio under
        `storage_dir` when set (a cluster's shared folder), else both in `data_dir`."""
        return cls(settings.storage_dir or settings.data_dir, settings.database_url)

    @property
    def location(self) -> str:
        """Where the database is, for messages (without a password)."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def _migrate(self) -> None:
        """Tables and version in one write transaction (DDL is transactional on both databases), so
        replicas starting together create them once instead of racing table by table."""
        with self._write() as db:
            metadata.create_all(db, checkfirst=True)
            version = db.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
            if version is None:
                db.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"voiceprint database is schema {version}, newer than this code "
                                   f"({SCHEMA_VERSION})")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One serialised write transaction: other writers (threads, processes, nodes) wait for it."""
        with driver_errors_as(StoreUnavailable), self.engine.connect() as db:
            if self.sqlite:
                db.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                db.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITE_LOCK)))
            try:
                yield db
                db.commit()
            except BaseException:
                db.rollback()
                raise

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with driver_errors_as(StoreUnavailable), self.engine.connect() as db:
            yield db

    # --- writes -----------------------------------------------------------------------------

    def add_sample(self, *, family: str, model: str, embedding: np.ndarray, audio: np.ndarray | None,
                   name: str, description: str = "", speaker_id: str | None = None) -> tuple[Speaker, str | None]:
        """Add one enrolment sample; creates the speaker when needed. Returns (speaker, audio path).

        Reachy speakers are found by name (enrolling a name again adds a sample);
        voice-family speakers get a new UUID unless `speaker_id` names one.
        """
        assert family in FAMILIES
        name, description = check_name(name), check_description(description)
        blob, now = _blob(embedding), time.time()
        with self._write() as db:
            sid = speaker_id
            if sid is None and family == "reachy":
                sid = _id_by_name(db, name, family)
            if sid is None or not db.execute(sa.select(speakers.c.id).where(speakers.c.id == sid)).first():
                sid = sid or str(uuid.uuid4())
                db.execute(speakers.insert().values(id=sid, family=family, name=name, description=description,
                                                    created_at=now, updated_at=now))
            else:
                db.execute(speakers.update().where(speakers.c.id == sid).values(updated_at=now))
            seconds = len(audio) / 16000 if audio is not None else 0.0
            inserted = db.execute(samples.insert().values(speaker_id=sid, model=model, dim=len(embedding),
                                                          embedding=blob, seconds=seconds, created_at=now))
            rel = None
            if audio is not None:
                sample_id = inserted.inserted_primary_key[0]   # type: ignore[index]
                rel = f"speakers/{sid}/{sample_id}.wav"
                self._write_file(rel, wav_bytes(audio))
                db.execute(samples.update().where(samples.c.id == sample_id).values(audio_path=rel))
        speaker = self.get(sid, model)
        assert speaker is not None   # written above, in this transaction
        return speaker, rel

    def delete(self, speaker_id: str, family: str | None = None) -> bool:
        """Remove the speaker (of `family` when given), its samples and its audio folder."""
        check_speaker_id(speaker_id)
        query = speakers.delete().where(speakers.c.id == speaker_id)
        if family is not None:
            query = query.where(speakers.c.family == family)
        with self._write() as db:
            gone = db.execute(query).rowcount > 0
            if gone:   # explicit, whatever the database's foreign-key enforcement
                db.execute(samples.delete().where(samples.c.speaker_id == speaker_id))
        if gone:
            shutil.rmtree(self.audio_root / speaker_id, ignore_errors=True)
        return gone

    def rename(self, speaker_id: str, name: str) -> bool:
        """Give the speaker a new name (its samples stay); False for an unknown id."""
        check_speaker_id(speaker_id)
        name = check_name(name)
        with self._write() as db:
            return db.execute(speakers.update().where(speakers.c.id == speaker_id)
                              .values(name=name, updated_at=time.time())).rowcount > 0

    def add_cohort(self, model: str, embeddings: list[np.ndarray], source: str = "") -> int:
        rows = [{"model": model, "embedding": _blob(e), "source": source} for e in embeddings]
        if rows:
            with self._write() as db:
                db.execute(cohort.insert(), rows)
        return self.cohort_size(model)

    def drop_cohort(self, model: str) -> None:
        with self._write() as db:
            db.execute(cohort.delete().where(cohort.c.model == model))

    def keep_test_clips(self, speaker_id: str, audios: list[np.ndarray], keep: int) -> list[str | None]:
        """Stores clips verified against the speaker beside its samples (deleted with it); only the newest
        `keep` stay. Each clip's path relative to the store, or None where it is not kept."""
        check_speaker_id(speaker_id)
        if keep <= 0:
            return [None] * len(audios)
        rels = [f"speakers/{speaker_id}/tests/{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.wav" for _ in audios]
        for rel, audio in zip(rels, audios):
            self._write_file(rel, wav_bytes(audio))
        for old in sorted((self.audio_root / speaker_id / "tests").glob("*.wav"))[:-keep]:
            old.unlink(missing_ok=True)
        if not self._count(speakers, speakers.c.id == speaker_id):   # deleted meanwhile: leave nothing
            shutil.rmtree(self.audio_root / speaker_id, ignore_errors=True)
            return [None] * len(audios)
        return [rel if (self.root / rel).is_file() else None for rel in rels]

    def _write_file(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    # --- re-enrolment with another embedding model (scripts/reembed.py) ---------------------

    def samples_to_reembed(self, model: str) -> tuple[list[tuple[str, str, float]], int]:
        """(speaker id, audio path, seconds) of stored sample audio with no embedding of `model` yet,
        and how many samples of other models have no audio to re-embed."""
        done = sa.func.max(sa.case((samples.c.model == model, 1), else_=0))
        query = (sa.select(samples.c.speaker_id, samples.c.audio_path, sa.func.max(samples.c.seconds), done)
                 .where(samples.c.audio_path.is_not(None))
                 .group_by(samples.c.speaker_id, samples.c.audio_path).order_by(sa.func.min(samples.c.id)))
        no_audio = (sa.select(sa.func.count()).select_from(samples)
                    .where(samples.c.audio_path.is_(None), samples.c.model != model))
        with self._read() as db:
            rows: list[Any] = list(db.execute(query).all())
            missing = db.execute(no_audio).scalar_one()
        return [(str(sid), str(rel), float(secs)) for sid, rel, secs, has in rows if not has], int(missing)

    def add_embedding(self, speaker_id: str, model: str, embedding: np.ndarray, audio_path: str,
                      seconds: float) -> None:
        """Another model's embedding of a stored sample's audio (the audio file is shared)."""
        with self._write() as db:
            db.execute(samples.insert().values(speaker_id=speaker_id, model=model, dim=len(embedding),
                                               embedding=_blob(embedding), audio_path=audio_path,
                                               seconds=seconds, created_at=time.time()))

    # --- reads ------------------------------------------------------------------------------

    def id_by_name(self, name: str, family: str = "reachy") -> str | None:
        with self._read() as db:
            return _id_by_name(db, unicodedata.normalize("NFKC", name), family)

    def names(self, family: str = "reachy") -> list[str]:
        query = (sa.select(speakers.c.name).where(speakers.c.family == family)
                 .order_by(speakers.c.created_at, speakers.c.name))
        with self._read() as db:
            return list(db.execute(query).scalars())

    def summaries(self, family: str) -> list[dict[str, Any]]:
        """Every speaker of `family` with its sample count, oldest first."""
        s = speakers.c
        query = (sa.select(s.id, s.name, s.description, s.created_at, s.updated_at, sa.func.count(samples.c.id))
                 .select_from(speakers.outerjoin(samples, samples.c.speaker_id == s.id))
                 .where(s.family == family).group_by(s.id).order_by(s.created_at, s.id))
        keys = ("speaker_id", "name", "description", "created_at", "updated_at", "samples")
        with self._read() as db:
            return [dict(zip(keys, r)) for r in db.execute(query)]

    def count(self, family: str) -> int:
        return self._count(speakers, speakers.c.family == family)

    def get(self, speaker_id: str, model: str) -> Speaker | None:
        """The speaker with its samples of `model` (samples of another model are not comparable)."""
        s = speakers.c
        with self._read() as db:
            row: Any = db.execute(sa.select(s.id, s.family, s.name, s.description, s.created_at,
                                            s.updated_at).where(s.id == speaker_id)).first()
            if row is None:
                return None
            rows: list[Any] = list(db.execute(
                sa.select(samples.c.embedding, samples.c.audio_path)
                .where(samples.c.speaker_id == speaker_id, samples.c.model == model).order_by(samples.c.id)))
        speaker = Speaker(*row)
        for blob, path in rows:
            if not _finite([blob]):
                continue
            speaker.embeddings.append(_array(blob))
            if path:
                speaker.audio_paths.append(path)
        return speaker

    def speakers(self, family: str, model: str) -> list[Speaker]:
        query = sa.select(speakers.c.id).where(speakers.c.family == family).order_by(speakers.c.created_at)
        with self._read() as db:
            ids: list[str] = list(db.execute(query).scalars())
        return [s for s in (self.get(i, model) for i in ids) if s is not None]

    def sample_count(self, speaker_id: str) -> int:
        return self._count(samples, samples.c.speaker_id == speaker_id)

    def impostors(self, model: str, exclude_speaker: str | None = None) -> np.ndarray:
        """Impostor cohort for AS-norm: the cohort table plus every other speaker's samples."""
        query = sa.union_all(
            sa.select(cohort.c.embedding).where(cohort.c.model == model),
            sa.select(samples.c.embedding).where(samples.c.model == model,
                                                 samples.c.speaker_id.is_distinct_from(exclude_speaker)))
        with self._read() as db:
            usable = _finite(db.execute(query).scalars())
        return np.stack(usable) if usable else np.zeros((0, 0), np.float32)

    def cohort_size(self, model: str) -> int:
        return self._count(cohort, cohort.c.model == model)

    def _count(self, table: sa.Table, where: Any) -> int:
        with self._read() as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())

    def path_of(self, rel: str) -> Path:
        return self.root / rel


def _id_by_name(db: sa.Connection, name: str, family: str) -> str | None:
    row = db.execute(sa.select(speakers.c.id).where(speakers.c.family == family, speakers.c.name == name)).first()
    return str(row[0]) if row else None


def _sqlite_manual_transactions(conn: Any, _record: Any) -> None:
    """The driver opens no transaction of its own (so `BEGIN IMMEDIATE` can), and cascades are on."""
    conn.isolation_level = None
    conn.execute("PRAGMA foreign_keys=ON")
