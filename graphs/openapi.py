"""The OpenAPI document with each operation's real error responses, in its API family's shape.

FastAPI documents only 200 and a 422 in its own validation shape; this server
answers errors in one shape per family (speechcore.errors) and with more
statuses (bad audio or text, auth, size and time limits, saturation, a model
not running). One table per family is added to every operation of that family
when the document is built, so clients and schema fuzzers see what really comes back.
"""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from speechcore.errors import family_of

ERRORS = {"400": "Bad request: invalid parameters, audio or text", "401": "Missing or wrong API key",
          "404": "Unknown model, voice or speaker", "408": "The request body did not arrive in time",
          "409": "Conflicting state", "413": "Upload or decoded audio too large",
          "422": "Unusable input (validation, audio too short or silent)",
          "429": "Too many requests queued (Retry-After)", "500": "Internal error",
          "503": "A model is not running, or the server is saturated (Retry-After)"}

_STRING = {"type": "string"}
_NULLABLE = {"anyOf": [_STRING, {"type": "null"}]}
SCHEMAS = {
    "GatewayError": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {"code": _STRING, "message": _STRING}}}},
    "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"],
        "properties": {"message": _STRING, "type": _STRING, "param": _NULLABLE, "code": _NULLABLE}}}},
    "DetailError": {"type": "object", "required": ["detail"], "properties": {"detail": {
        "anyOf": [_STRING, {"type": "array", "items": {"type": "object"}}]}}},
}
_BY_FAMILY = {"gateway": "GatewayError", "openai": "OpenAIError", "detail": "DetailError"}


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with a builder that adds the family error responses (built once)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = with_errors(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def with_errors(schema: dict) -> dict:
    schema.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS)
    for path, operations in schema.get("paths", {}).items():
        ref = {"$ref": f"#/components/schemas/{_BY_FAMILY[family_of(path)]}"}
        for op in operations.values():
            responses = op.setdefault("responses", {})
            for status, description in ERRORS.items():
                responses[status] = {"description": description, "content": {"application/json": {"schema": ref}}}
    return schema
