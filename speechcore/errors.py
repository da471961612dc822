"""One error type for the whole server, rendered in each API family's own shape.

Families (by path): the speech gateway (`/v1/speech/...`) answers
`{"error": {"code", "message"}}`; the OpenAI-compatible paths answer
`{"error": {"message", "type", "param", "code"}}`; every other family uses
FastAPI's `{"detail": message}`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    param: str | None = None

    def __str__(self) -> str:
        return self.message


class AudioError(ApiError):
    """Audio that cannot be used: empty, not audio, truncated, silent, too long."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(status=status, code=code, message=message, param="file")


class UploadTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "file_too_large", f"Upload exceeds the limit of {limit} bytes.")


class Unavailable(ApiError):
    """A model or deployment that is not loaded or cannot be placed."""

    def __init__(self, message: str, code: str = "engine_unavailable"):
        super().__init__(503, code, message)


def family_of(path: str) -> str:
    if path.startswith("/v1/speech"):
        return "gateway"
    if path.startswith(("/v1/audio", "/v1/models", "/v1/chat")):
        return "openai"
    return "detail"


_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "requests"}   # 429: as OpenAI


def openai_type(status: int) -> str:
    """OpenAI's error `type`: a client-error type for every 4xx, `server_error` otherwise."""
    return _OPENAI_TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "server_error")


def error_body(path: str, status: int, code: str, message: str, param: str | None = None) -> dict:
    family = family_of(path)
    if family == "gateway":
        return {"error": {"code": code, "message": message}}
    if family == "openai":
        return {"error": {"message": message, "type": openai_type(status),
                          "param": param, "code": code}}
    return {"detail": message}


def ws_error_event(path: str, code: str, message: str) -> dict:
    """An error as a WebSocket message: the gateway's error object, else `{"type": "error", ...}`."""
    if family_of(path) == "gateway":
        return error_body(path, 400, code, message)
    return {"type": "error", "code": code, "message": message}
