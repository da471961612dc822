"""Speaker collections (the platform's `/api/collections`): a name and a language -> speaker-id map.

SQLite under the data dir (`<data_dir>/tts.sqlite3`, WAL, one transaction per
write), plain parameterised SQL, no Ray. Collections are validated before
they are stored: language codes must be the platform's, speaker ids must be
voices the server has (the caller passes the known ids), ids are UUIDs.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection as Ids, Iterator

from speechcore.errors import ApiError
from speechcore.speakers.schema import connect
from speechcore.voices.catalog import COLLECTION_LANGUAGES

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
NAME_MAX = 200
SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    user_id     TEXT NOT NULL,
    langs       TEXT NOT NULL,       -- JSON object: language code -> speaker UUID
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
)"""
INDEX = "CREATE INDEX IF NOT EXISTS collections_user ON collections(user_id)"


@dataclass
class SpeakerCollection:
    id: str
    name: str
    user_id: str
    description: str = ""
    langs: dict[str, str] = field(default_factory=dict)


def check_uuid(value: str, param: str, what: str = "collection") -> str:
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise ApiError(404, f"{what}_not_found", f"Unknown {what} {value!r} (ids are UUIDs).", param=param)
    return value.lower()


def check_langs(langs: dict[str, str], speakers: Ids[str]) -> dict[str, str]:
    """`langs` with lower-case ids; ApiError 422 naming an unknown language code or speaker id."""
    out = {}
    for lang, speaker in langs.items():
        if lang not in COLLECTION_LANGUAGES:
            raise ApiError(422, "unsupported_language", f"Unknown language code {lang!r} in langs; use "
                                                        f"{', '.join(COLLECTION_LANGUAGES)}.", param=f"langs.{lang}")
        if not isinstance(speaker, str) or speaker.lower() not in speakers:
            raise ApiError(422, "speaker_not_found", f"Unknown speaker id {speaker!r} for {lang!r}; "
                                                     "GET /api/speakers lists them.", param=f"langs.{lang}")
        out[lang] = speaker.lower()
    return out


def check_text(value: str, param: str, required: bool) -> str:
    value = value.strip()
    if (required and not value) or len(value) > NAME_MAX or any(ord(c) < 32 for c in value):
        raise ApiError(422, f"invalid_{param}", f"`{param}` must be {'1' if required else '0'}-{NAME_MAX} "
                                                "characters without control characters.", param=param)
    return value


class CollectionStore:
    def __init__(self, data_dir: str | Path):
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.db_path = str(Path(data_dir) / "tts.sqlite3")
        self._local = threading.local()
        with self._write() as db:
            db.execute(SCHEMA)
            db.execute(INDEX)

    @property
    def conn(self) -> sqlite3.Connection:
        """One connection per thread (a sqlite3 connection must not run two transactions at once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.db_path)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def create(self, name: str, user_id: str, description: str, langs: dict[str, str]) -> SpeakerCollection:
        now = time.time()
        item = SpeakerCollection(str(uuid.uuid4()), name, user_id, description, langs)
        with self._write() as db:
            db.execute("INSERT INTO collections (id, name, description, user_id, langs, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (item.id, name, description, user_id, json.dumps(langs), now, now))
        return item

    def update(self, collection_id: str, changes: dict[str, Any]) -> SpeakerCollection:
        """Set `name`, `description` and/or `langs` (the whole map); 404 for an unknown id."""
        with self._write() as db:
            item = self._get(db, collection_id)
            for key, value in changes.items():
                setattr(item, key, value)
            db.execute("UPDATE collections SET name = ?, description = ?, langs = ?, updated_at = ? WHERE id = ?",
                       (item.name, item.description, json.dumps(item.langs), time.time(), item.id))
        return item

    def delete(self, collection_id: str) -> None:
        with self._write() as db:
            if db.execute("DELETE FROM collections WHERE id = ?", (collection_id,)).rowcount == 0:
                raise _not_found(collection_id)

    def get(self, collection_id: str) -> SpeakerCollection:
        return self._get(self.conn, collection_id)

    def list(self, user_id: str) -> list[SpeakerCollection]:
        rows = self.conn.execute("SELECT id, name, user_id, description, langs FROM collections "
                                 "WHERE user_id = ? ORDER BY created_at, id", (user_id,)).fetchall()
        return [_row(r) for r in rows]

    @staticmethod
    def _get(db: sqlite3.Connection, collection_id: str) -> SpeakerCollection:
        row = db.execute("SELECT id, name, user_id, description, langs FROM collections WHERE id = ?",
                         (collection_id,)).fetchone()
        if row is None:
            raise _not_found(collection_id)
        return _row(row)


def _row(row: tuple[Any, ...]) -> SpeakerCollection:
    return SpeakerCollection(id=row[0], name=row[1], user_id=row[2], description=row[3], langs=json.loads(row[4]))


def _not_found(collection_id: str) -> ApiError:
    return ApiError(404, "collection_not_found", f"Collection {collection_id!r} not found.", param="collection_id")
