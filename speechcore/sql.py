"""SQL engines shared by the server's stores (jobs, voiceprints): SQLite or PostgreSQL by URL.

`sqlite:///path` is the embedded default (one machine; WAL mode and a busy
timeout so ingress replicas and workers in several processes share it);
`postgresql+psycopg://user@host/db` serves a cluster, where ingress and
workers run on different nodes. Driver errors leave a store as one error type
of the caller's choosing, without the driver's text (that goes to the log).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def engine_for(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL mode and a busy timeout so processes wait for each other."""
    if is_sqlite(url):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


@contextmanager
def driver_errors_as(error: Callable[[str], Exception]) -> Iterator[None]:
    """Any SQLAlchemy/driver error inside becomes `error(<exception type name>)`."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise error(type(exc).__name__) from exc
