"""The one place the voiceprint database schema lives (SQLAlchemy Core: SQLite or PostgreSQL).

The tables match the first, hand-written SQLite schema column for column, so a
voiceprints.sqlite3 written by an earlier version opens unchanged. Bump
SCHEMA_VERSION and add a migration step when a table changes.
"""
from __future__ import annotations

import sqlite3

import sqlalchemy as sa

SCHEMA_VERSION = 1

metadata = sa.MetaData()
speakers = sa.Table(
    "speakers", metadata,
    sa.Column("id", sa.Text, primary_key=True),            # UUID, also names the speaker's audio folder
    sa.Column("family", sa.Text, nullable=False),          # 'reachy' (keyed by name) or 'voice' (keyed by id)
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
sa.Index("speakers_reachy_name", speakers.c.name, unique=True,
         sqlite_where=speakers.c.family == "reachy", postgresql_where=speakers.c.family == "reachy")

samples = sa.Table(
    "samples", metadata,
    sa.Column("id", sa.Integer, primary_key=True),         # never reused: it names the sample's audio file
    sa.Column("speaker_id", sa.Text, sa.ForeignKey("speakers.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("model", sa.Text, nullable=False, index=True),  # embedding model: scores compare like with like
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=False),  # float32 little-endian, L2-normalised
    sa.Column("audio_path", sa.Text),                      # relative to the store's root
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)

cohort = sa.Table(
    "cohort", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model", sa.Text, nullable=False, index=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
    sa.Column("source", sa.Text, nullable=False, server_default=""),  # where the impostor recording came from
    sqlite_autoincrement=True,
)

schema_version = sa.Table("voiceprint_schema", metadata, sa.Column("version", sa.Integer, primary_key=True))


def connect(path: str, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A plain SQLite connection that waits for other writers instead of failing, with foreign keys on
    (the TTS voice collections' store uses it)."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn
