"""One auth layer, one CORS policy, one upload limit, one error format per API family."""
from __future__ import annotations

import asyncio
from typing import Callable, Mapping
import hmac
import math
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from speechcore.errors import ApiError, UploadTooLarge, family_for
from speechcore.settings import get_settings

log = logging.getLogger("speech.errors")

PUBLIC_PATHS = {"/", "/health", "/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect",
                "/test"}   # /test: the voice layer's static browser console (its socket still needs the key)

UPLOAD_LIMITS: dict[str, Callable[[], tuple[int, float, str]]] = {}
"""Exact path -> (byte limit, body deadline s, 413 message) replacing the global ones (routers register)."""


def app_path(scope) -> str:
    """The path inside this application (Serve mounts apps under a route prefix = root_path)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


def error_response(request_path: str, err: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The error in the shape of the family that owns the path (routers register theirs)."""
    cause = getattr(err, "cause", None)   # raised in a deployment: Ray wraps it, the original has every field
    err = cause if isinstance(cause, ApiError) else err
    headers = dict(headers or {})
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if err.status == 408:
        headers["Connection"] = "close"
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after_s)))
    return JSONResponse(family_for(request_path).body(err), status_code=err.status, headers=headers or None)


class BodyTimeout(ApiError):
    def __init__(self, seconds: float):
        super().__init__(408, "request_timeout", f"The request body did not arrive within {seconds:g} s.")


class GuardMiddleware:
    """ASGI middleware: API key check, a streaming request-body size limit and a body deadline.

    The body limit counts bytes as they arrive, so an oversized upload is
    refused (413) without being read whole; Content-Length is checked first.
    The whole body must arrive within `body_timeout_s` of the request (408
    otherwise), so stalled or trickling uploads cannot hold the ingress.
    Header bytes are read as latin-1 (HTTP's own charset): any byte is valid.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        settings = get_settings()
        path = app_path(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if settings.api_key and scope.get("method") != "OPTIONS" and not _is_public(path):
            if not _authorized(headers, settings.api_key, _ws_query_key(scope)):
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008, "reason": "Unauthorized"})
                err = ApiError(401, "unauthorized", "Unauthorized")
                return await error_response(path, err)(scope, receive, send)
        if scope["type"] == "http":
            limit, deadline, message = UPLOAD_LIMITS.get(path, lambda: (settings.max_upload_bytes,
                                                                        settings.body_timeout_s, None))()
            length = headers.get("content-length")
            if length and length.isdigit() and int(length) > limit:
                return await error_response(path, UploadTooLarge(limit, message))(scope, receive, send)
            receive = _limited(receive, limit, deadline, message)
        return await self.app(scope, receive, send)


class CorsGate:
    """ASGI middleware: CORS per `SPEECH_CORS_ORIGINS` (read per request, like the API key).

    An allowed origin gets Starlette's CORS headers (preflights answer 200 with
    every method and requested header allowed). A preflight from any other
    origin, or from any origin when none is configured, answers 403 in the
    family's error shape, never 405; other requests from it pass unchanged and
    without CORS headers, so the browser withholds the response.
    """

    def __init__(self, app):
        self.app = app
        self._cors: dict[tuple[str, ...], CORSMiddleware] = {}

    async def __call__(self, scope, receive, send):
        origin = Headers(scope=scope).get("origin") if scope["type"] == "http" else None
        if not origin:
            return await self.app(scope, receive, send)
        origins = tuple(get_settings().cors_origins)
        if "*" in origins or origin.rstrip("/") in origins:
            if origins not in self._cors:
                self._cors[origins] = CORSMiddleware(self.app, allow_origins=list(origins), allow_methods=["*"],
                                                     allow_headers=["*"], max_age=600)
            return await self._cors[origins](scope, receive, send)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in Headers(scope=scope):
            err = ApiError(403, "origin_not_allowed", f"Cross-origin requests from {origin!r} are not allowed "
                           "(the server's SPEECH_CORS_ORIGINS does not list it).")
            return await error_response(app_path(scope), err)(scope, receive, send)
        return await self.app(scope, receive, send)


def _limited(receive, limit: int, timeout_s: float, message: str | None = None):
    """`receive` that refuses more than `limit` body bytes, or a body not complete within `timeout_s`."""
    seen, done, deadline = 0, False, time.monotonic() + timeout_s

    async def wrapped():
        nonlocal seen, done
        if done:   # the body is in; later receives wait for the disconnect, unbounded
            return await receive()
        try:
            event = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise BodyTimeout(timeout_s) from None
        if event["type"] == "http.request":
            seen += len(event.get("body", b""))
            if seen > limit:
                raise UploadTooLarge(limit, message)
            done = not event.get("more_body", False)
        return event

    return wrapped


def _allowed(request: Request, exc: HTTPException) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    from starlette.routing import Match

    methods = {m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()}
    methods |= {m for r in request.app.router.routes if r.matches(request.scope)[0] != Match.NONE
                for m in getattr(r, "methods", None) or ()}
    return ", ".join(sorted(methods))


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


def _authorized(headers: dict[str, str], key: str, query_key: str = "") -> bool:
    auth = headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else headers.get("x-api-key", "") or query_key
    return bool(token) and hmac.compare_digest(token.encode(), key.encode())


def _ws_query_key(scope) -> str:
    """`?api_key=` of a WebSocket handshake: browsers cannot set headers on a WebSocket. HTTP requests
    never take the key from the URL (URLs end up in logs and histories)."""
    if scope["type"] != "websocket":
        return ""
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key", [])
    return values[0] if values else ""


def install(app: FastAPI) -> None:
    from graphs import openapi

    app.add_middleware(GuardMiddleware)
    app.add_middleware(CorsGate)   # outermost: auth and size errors carry CORS headers too
    openapi.install(app)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(app_path(request.scope), exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if isinstance(exc.__cause__, ApiError):  # FastAPI wraps errors raised while parsing the body
            return error_response(app_path(request.scope), exc.__cause__)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = {"Allow": _allowed(request, exc)} if exc.status_code == 405 else exc.headers
        return error_response(app_path(request.scope), ApiError(exc.status_code, code, str(exc.detail)), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        path = app_path(request.scope)
        if family_for(path).fastapi_validation:
            from fastapi.encoders import jsonable_encoder
            return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", [])[1:])
        return error_response(path, ApiError(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}",
                                             param=where or None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", app_path(request.scope))
        return error_response(app_path(request.scope), ApiError(500, "internal_error", f"Internal error: {type(exc).__name__}"))
