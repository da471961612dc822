"""A throwaway PostgreSQL server for the tests: initdb in a temp dir, a free port, stopped afterwards.

Uses the Debian `postgresql` package's binaries (`make system` installs it).
PostgreSQL refuses to run as root, so under root the server runs as the
`postgres` system user (created by the package); otherwise as the test user.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    return found if isinstance(found, str) else (found[0] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return bool(_bin("initdb") and _bin("pg_ctl"))


@contextmanager
def postgres() -> Iterator[str]:
    """Start a server; yields its SQLAlchemy URL (database `postgres`, trust auth on 127.0.0.1)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    assert initdb and pg_ctl, "PostgreSQL is not installed: run `make system`"
    root = Path(tempfile.mkdtemp(prefix="speech-pg-"))
    data, port = root / "data", _free_port()
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else None
    if as_root:
        shutil.chown(root, "postgres")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    run = lambda *a: subprocess.run([*prefix, *a], check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", user or "postgres", "--no-sync")
        run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
            f"-p {port} -h 127.0.0.1 -k {root} -F", "start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
