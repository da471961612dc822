"""What the bridges share: URL checks and WebSocket connections that fail with a client-facing error."""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from speechcore.errors import ApiError

CONNECT_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def checked_url(url: str, schemes: tuple[str, ...], param: str) -> str:
    """`url` if it is an absolute URL with one of `schemes` and a host; ApiError 400 naming `param` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname or len(url) > 2000:
        raise ApiError(400, "invalid_url", f"`{param}` must be a {' or '.join(schemes)} URL with a host.",
                       param=param)
    return url


async def open_ws(url: str, service: str, timeout_s: float = CONNECT_TIMEOUT_S) -> ClientConnection:
    """A connection to an external WebSocket service; ApiError 502 `<service>_unreachable` otherwise."""
    try:
        return await asyncio.wait_for(connect(url, open_timeout=timeout_s, max_size=MAX_MESSAGE_BYTES,
                                              ping_interval=None), timeout_s + 1)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise ApiError(502, f"{service}_unreachable", f"The external {service.upper()} service at {url} cannot "
                       f"be reached ({type(exc).__name__}).") from exc
