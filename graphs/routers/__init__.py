"""HTTP and WebSocket routers, one module per API family. They parse, validate and format only."""
from __future__ import annotations

from graphs.services import Services
from speechcore.errors import Unavailable

_services: Services | None = None


def bind(svc: Services) -> None:
    """Called once by the ingress replica (Serve serves a copy of the app, so app.state is not shared)."""
    global _services
    _services = svc


def services() -> Services:
    """FastAPI dependency: the running graph's deployment handles."""
    if _services is None:
        raise Unavailable("The ingress is still starting")
    return _services
