"""One error type for the whole server, rendered in each API family's own shape.

A family is a renderer (`ErrorFamily`); the routers that own a family register
it for their path prefixes (`register_family`), so this module knows no URLs.
Paths no family claims answer FastAPI's `{"detail": message}`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    param: str | None = None
    retry_after_s: float | None = None
    """Sent as `Retry-After` (whole seconds) when set: the server is busy, not the request wrong."""

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles with its fields whatever a subclass's __init__ takes (errors cross Ray processes).
        return (_restore, (type(self), dict(self.__dict__)))


def _restore(cls: type[ApiError], state: dict[str, Any]) -> ApiError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    return err


class AudioError(ApiError):
    """Audio that cannot be used: empty, not audio, truncated, silent, too long."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(status=status, code=code, message=message, param="file")


class UploadTooLarge(ApiError):
    def __init__(self, limit: int, message: str | None = None):
        super().__init__(413, "file_too_large", message or f"Upload exceeds the limit of {limit} bytes.")


class Unavailable(ApiError):
    """A model or deployment that is not loaded or cannot be placed."""

    def __init__(self, message: str, code: str = "engine_unavailable"):
        super().__init__(503, code, message)


def _detail_body(err: ApiError) -> dict[str, Any]:
    return {"detail": err.message}


@dataclass(frozen=True)
class ErrorFamily:
    name: str
    body: Callable[[ApiError], dict[str, Any]] = _detail_body
    """The JSON body of an HTTP error response."""
    fastapi_validation: bool = False
    """Request-validation errors keep FastAPI's own 422 `{"detail": [...]}` list."""


DETAIL = ErrorFamily("detail", fastapi_validation=True)
"""The default: FastAPI's `{"detail": message}`."""

_registry: dict[str, ErrorFamily] = {}


def register_family(family: ErrorFamily, *prefixes: str) -> ErrorFamily:
    """Paths starting with any of `prefixes` answer errors in `family`'s shape (longest prefix wins)."""
    for prefix in prefixes:
        _registry[prefix] = family
    return family


def family_for(path: str) -> ErrorFamily:
    matches = [p for p in _registry if path.startswith(p)]
    return _registry[max(matches, key=len)] if matches else DETAIL


def family_of(path: str) -> str:
    return family_for(path).name


def error_body(path: str, status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return family_for(path).body(ApiError(status, code, message, param))
