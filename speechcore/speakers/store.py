"""Voiceprint store: speakers, every enrolment sample's embedding and audio, the impostor cohort.

SQLite in WAL mode under the data dir. Every write is one `BEGIN IMMEDIATE`
transaction, so enrolments from several ingress replicas (processes) serialise
on the database lock instead of losing samples. Audio files live under
`<data_dir>/speakers/<speaker uuid>/`; ids are validated as UUIDs before any
path is built, so no request can reach outside that folder.
"""
from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from speechcore.audio import wav_bytes
from speechcore.errors import ApiError
from speechcore.speakers.schema import connect, migrate

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


class VoiceprintStore:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir)
        self.audio_root = self.root / "speakers"
        self.audio_root.mkdir(parents=True, exist_ok=True)
        self.db_path = str(self.root / "voiceprints.sqlite3")
        self._local = threading.local()
        migrate(self.conn)

    @property
    def conn(self) -> sqlite3.Connection:
        """One connection per thread (a sqlite3 connection must not run two transactions at once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.db_path)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate (write-locked) transaction: other writers wait on the busy timeout."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # --- writes -----------------------------------------------------------------------------

    def add_sample(self, *, family: str, model: str, embedding: np.ndarray, audio: np.ndarray | None,
                   name: str, description: str = "", speaker_id: str | None = None) -> tuple[Speaker, str | None]:
        """Add one enrolment sample; creates the speaker when needed. Returns (speaker, audio path).

        Reachy speakers are found by name (enrolling a name again adds a sample);
        voice-family speakers get a new UUID unless `speaker_id` names one.
        """
        assert family in FAMILIES
        name = check_name(name)
        now = time.time()
        with self._write() as db:
            sid = speaker_id
            if sid is None and family == "reachy":
                sid = self._id_by_name(db, name, family)
            if sid is None or not db.execute("SELECT 1 FROM speakers WHERE id=?", (sid,)).fetchone():
                sid = sid or str(uuid.uuid4())
                db.execute("INSERT INTO speakers (id, family, name, description, created_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (sid, family, name, description, now, now))
            else:
                db.execute("UPDATE speakers SET updated_at=? WHERE id=?", (now, sid))
            seconds = len(audio) / 16000 if audio is not None else 0.0
            cur = db.execute("INSERT INTO samples (speaker_id, model, dim, embedding, seconds, created_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (sid, model, len(embedding), _blob(embedding), seconds, now))
            rel = None
            if audio is not None:
                rel = f"speakers/{sid}/{cur.lastrowid}.wav"
                self._write_file(rel, wav_bytes(audio))
                db.execute("UPDATE samples SET audio_path=? WHERE id=?", (rel, cur.lastrowid))
        speaker = self.get(sid, model)
        assert speaker is not None   # written above, in this transaction
        return speaker, rel

    def delete(self, speaker_id: str, family: str | None = None) -> bool:
        """Remove the speaker (of `family` when given), its samples (cascade) and its audio folder."""
        check_speaker_id(speaker_id)
        with self._write() as db:
            gone = db.execute("DELETE FROM speakers WHERE id=? AND family=IFNULL(?, family)",
                              (speaker_id, family)).rowcount > 0
        if gone:
            shutil.rmtree(self.audio_root / speaker_id, ignore_errors=True)
        return gone

    def rename(self, speaker_id: str, name: str) -> bool:
        """Give the speaker a new name (its samples stay); False for an unknown id."""
        check_speaker_id(speaker_id)
        name = check_name(name)
        with self._write() as db:
            return db.execute("UPDATE speakers SET name=?, updated_at=? WHERE id=?",
                              (name, time.time(), speaker_id)).rowcount > 0

    def add_cohort(self, model: str, embeddings: list[np.ndarray], source: str = "") -> int:
        with self._write() as db:
            db.executemany("INSERT INTO cohort (model, embedding, source) VALUES (?, ?, ?)",
                           [(model, _blob(e), source) for e in embeddings])
        return self.cohort_size(model)

    def drop_cohort(self, model: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM cohort WHERE model=?", (model,))

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
        rows = self.conn.execute(
            "SELECT speaker_id, audio_path, MAX(seconds), MAX(model = ?) FROM samples "
            "WHERE audio_path IS NOT NULL GROUP BY speaker_id, audio_path ORDER BY MIN(id)", (model,)).fetchall()
        missing = self.conn.execute("SELECT COUNT(*) FROM samples WHERE audio_path IS NULL AND model != ?",
                                    (model,)).fetchone()[0]
        return [(sid, rel, seconds) for sid, rel, seconds, done in rows if not done], missing

    def add_embedding(self, speaker_id: str, model: str, embedding: np.ndarray, audio_path: str,
                      seconds: float) -> None:
        """Another model's embedding of a stored sample's audio (the audio file is shared)."""
        with self._write() as db:
            db.execute("INSERT INTO samples (speaker_id, model, dim, embedding, audio_path, seconds, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (speaker_id, model, len(embedding), _blob(embedding), audio_path, seconds, time.time()))

    # --- reads ------------------------------------------------------------------------------

    @staticmethod
    def _id_by_name(db: sqlite3.Connection, name: str, family: str) -> str | None:
        row = db.execute("SELECT id FROM speakers WHERE family=? AND name=?", (family, name)).fetchone()
        return row[0] if row else None

    def id_by_name(self, name: str, family: str = "reachy") -> str | None:
        return self._id_by_name(self.conn, unicodedata.normalize("NFKC", name), family)

    def names(self, family: str = "reachy") -> list[str]:
        rows = self.conn.execute("SELECT name FROM speakers WHERE family=? ORDER BY created_at, name", (family,))
        return [r[0] for r in rows]

    def summaries(self, family: str) -> list[dict[str, Any]]:
        """Every speaker of `family` with its sample count, oldest first."""
        rows = self.conn.execute(
            "SELECT s.id, s.name, s.description, s.created_at, s.updated_at, COUNT(m.id) FROM speakers s "
            "LEFT JOIN samples m ON m.speaker_id = s.id WHERE s.family=? GROUP BY s.id "
            "ORDER BY s.created_at, s.id", (family,))
        keys = ("speaker_id", "name", "description", "created_at", "updated_at", "samples")
        return [dict(zip(keys, r)) for r in rows]

    def count(self, family: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM speakers WHERE family=?", (family,)).fetchone()[0]

    def get(self, speaker_id: str, model: str) -> Speaker | None:
        """The speaker with its samples of `model` (samples of another model are not comparable)."""
        row = self.conn.execute("SELECT id, family, name, description, created_at, updated_at FROM speakers "
                                "WHERE id=?", (speaker_id,)).fetchone()
        if row is None:
            return None
        speaker = Speaker(*row)
        for blob, path in self.conn.execute("SELECT embedding, audio_path FROM samples WHERE speaker_id=? "
                                            "AND model=? ORDER BY id", (speaker_id, model)):
            if not _finite([blob]):
                continue
            speaker.embeddings.append(_array(blob))
            if path:
                speaker.audio_paths.append(path)
        return speaker

    def speakers(self, family: str, model: str) -> list[Speaker]:
        ids = [r[0] for r in self.conn.execute("SELECT id FROM speakers WHERE family=? ORDER BY created_at",
                                               (family,))]
        return [s for s in (self.get(i, model) for i in ids) if s is not None]

    def sample_count(self, speaker_id: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM samples WHERE speaker_id=?", (speaker_id,)).fetchone()[0]

    def impostors(self, model: str, exclude_speaker: str | None = None) -> np.ndarray:
        """Impostor cohort for AS-norm: the cohort table plus every other speaker's samples."""
        rows = self.conn.execute(
            "SELECT embedding FROM cohort WHERE model=? UNION ALL "
            "SELECT embedding FROM samples WHERE model=? AND speaker_id IS NOT ?",
            (model, model, exclude_speaker)).fetchall()
        usable = _finite(r[0] for r in rows)
        return np.stack(usable) if usable else np.zeros((0, 0), np.float32)

    def cohort_size(self, model: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM cohort WHERE model=?", (model,)).fetchone()[0]

    def path_of(self, rel: str) -> Path:
        return self.root / rel
