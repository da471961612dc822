"""The one place the voiceprint database schema lives (SQLite, WAL mode).

Bump SCHEMA_VERSION and add a migration step when a table changes.
"""
from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 1

SCHEMA = """  -- statements are split on semicolons: keep them out of comments
CREATE TABLE IF NOT EXISTS speakers (
    id          TEXT PRIMARY KEY,            -- UUID, also names the speaker's audio folder
    family      TEXT NOT NULL,               -- 'reachy' (keyed by name) or 'voice' (keyed by id)
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS speakers_reachy_name ON speakers(name) WHERE family = 'reachy';

CREATE TABLE IF NOT EXISTS samples (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    speaker_id  TEXT NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
    model       TEXT NOT NULL,               -- embedding model: scores compare like with like
    dim         INTEGER NOT NULL,
    embedding   BLOB NOT NULL,               -- float32 little-endian, L2-normalised
    audio_path  TEXT,                        -- relative to the data dir
    seconds     REAL NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_speaker ON samples(speaker_id);
CREATE INDEX IF NOT EXISTS samples_model ON samples(model);

CREATE TABLE IF NOT EXISTS cohort (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    model       TEXT NOT NULL,
    embedding   BLOB NOT NULL,
    source      TEXT NOT NULL DEFAULT ''     -- where the impostor recording came from
);
CREATE INDEX IF NOT EXISTS cohort_model ON cohort(model);
"""


def connect(path: str, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A connection that waits for other writers instead of failing, with foreign keys on."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"voiceprint database is schema {version}, newer than this code ({SCHEMA_VERSION})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, SCHEMA.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
