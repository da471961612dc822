"""Inputs and outputs of a batch run, Ray-free: which files to do, how to read them, how rows are written.

OUTPUT is a Parquet dataset directory (`OUTPUT.parquet/part-*.parquet`, as Ray
Data and Spark write them; pyarrow and pandas read the directory as one table).
Each flush adds a part file, so a stopped run keeps what it finished and the
next run skips those paths.
"""
from __future__ import annotations

import glob
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".webm", ".aac", ".mp4"}

WORD = pa.struct([("word", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
                  ("probability", pa.float64())])
SEGMENT = pa.struct([("id", pa.int32()), ("start", pa.float64()), ("end", pa.float64()), ("text", pa.string()),
                     ("avg_logprob", pa.float64()), ("no_speech_prob", pa.float64()),
                     ("speaker", pa.string()), ("words", pa.list_(WORD))])
SCHEMA = pa.schema([("path", pa.string()), ("duration", pa.float64()), ("language", pa.string()),
                    ("text", pa.string()), ("segments", pa.list_(SEGMENT)), ("speakers", pa.list_(pa.string())),
                    ("model", pa.string()), ("error", pa.string())])
"""One row per input file; `error` is null when the file was transcribed, else what went wrong
(`segments` empty); `speaker`/`speakers` are null without `--diarize`."""


def is_uri(path: str) -> bool:
    return "://" in path


def list_inputs(spec: str) -> list[str]:
    """A folder (audio files under it), a glob, or a text file of paths/URIs (one a line, `#` comments)."""
    p = Path(spec)
    if p.is_dir():
        return sorted(str(f.resolve()) for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
    if p.is_file() and p.suffix.lower() not in AUDIO_SUFFIXES:
        lines = [ln.strip() for ln in p.read_text().splitlines()]
        return [ln if is_uri(ln) else str((p.parent / ln).resolve()) for ln in lines if ln and not ln.startswith("#")]
    if p.is_file():
        return [str(p.resolve())]
    return sorted(str(Path(f).resolve()) for f in glob.glob(spec, recursive=True) if Path(f).is_file())


def read_bytes(path: str) -> bytes:
    """Bytes of a local path or any URI pyarrow's filesystems read (file://, s3://, gs://, hdfs://)."""
    if not is_uri(path):
        return Path(path).read_bytes()
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(path)
    with filesystem.open_input_stream(inner) as f:
        return bytes(f.read())


def done_paths(output: Path) -> set[str]:
    """Paths already in OUTPUT (transcribed or failed): a resumed run skips them."""
    if not output.exists():
        return set()
    return set(pq.read_table(output, columns=["path"]).column("path").to_pylist())


class PartWriter:
    """Appends rows to OUTPUT as part files of at most `rows_per_part` rows (or every `flush_s` seconds)."""

    def __init__(self, output: Path, rows_per_part: int = 64, flush_s: float = 30.0):
        self.output, self.rows_per_part, self.flush_s = output, rows_per_part, flush_s
        self.pending: list[dict[str, Any]] = []
        self.parts = 0
        self.last = time.monotonic()
        output.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.rows_per_part or time.monotonic() - self.last > self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            name = f"part-{time.strftime('%Y%m%d%H%M%S')}-{time.time_ns() % 10**9:09d}-{self.parts:05d}.parquet"
            tmp = self.output / f".{name}.tmp"
            pq.write_table(pa.Table.from_pylist(self.pending, schema=SCHEMA), tmp)
            tmp.rename(self.output / name)   # a reader never sees half a part
            self.parts += 1
        self.pending, self.last = [], time.monotonic()


def to_row(stage_row: dict[str, Any]) -> dict[str, Any]:
    """A pipeline output row (segments as JSON, so Ray Data never infers nested types) -> a SCHEMA row."""
    error = stage_row.get("error") or None
    segments = [] if error else json.loads(stage_row.get("segments_json") or "[]")
    speakers = sorted({s["speaker"] for s in segments if s.get("speaker")}) or None
    return {"path": str(stage_row["path"]), "duration": float(stage_row.get("duration") or 0.0),
            "language": None if error else str(stage_row.get("language") or ""),
            "text": None if error else str(stage_row.get("text") or ""), "segments": segments,
            "speakers": speakers, "model": str(stage_row.get("model") or ""), "error": error}
