"""Who answers a voice-layer session: the server's own LLM, or an external chat backend.

External backend (settings `backend_base_url`, `backend_api_key`,
`default_registration_id`, `allow_frontend_backend_auth`), every call with
`Authorization: Bearer <backend_api_key>` when one is set:

- `POST <root>/v1/register` `{provider, api_key, model, base_url, system_prompt}`
  -> `{"registration_id": str}` (cached per distinct request for the process).
- `POST <root>/v1/chat` `{registration_id, session_id, message, history: [{role, content}]}`
  -> `{"reply": str, "metadata": {...}}` (metadata is passed on in `assistant.message`).

A session names `backend.registration_id`, or `backend.provider: "custom"` with
the provider's fields to register; neither: `default_registration_id`, else the
local LLM. Without `allow_frontend_backend_auth` a session may not send
`api_key` or `base_url` (a browser cannot change which credentials the server uses).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import httpx

from graphs.routers.voice_layer_wire import BackendConfig
from graphs.services import Services
from graphs.voice_chat import ServerLLM
from speechcore.errors import ApiError
from speechcore.schemas import ChatMessage
from speechcore.sessions.conversation import ChatOptions
from speechcore.settings import get_settings

TIMEOUT_S = 60.0
_registrations: dict[str, str] = {}


class LocalChat(ServerLLM):
    """The server's `llm` deployment (voice chat's ServerLLM), with `assistant.message` metadata."""

    def describe(self) -> dict[str, Any]:
        return {"type": "local", "model": self.svc.spec.role("llm").model}

    @property
    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "local", "model": self.svc.spec.role("llm").model}
        if self.last is not None:
            out.update(finish_reason=self.last.finish_reason, prompt_tokens=self.last.prompt_tokens,
                       completion_tokens=self.last.completion_tokens)
        return out


class BackendChat:
    """The external backend's `/v1/chat`: the user's turn and the history in, one reply out."""

    def __init__(self, root: str, registration_id: str, session_id: str | None, client: httpx.AsyncClient):
        self.root, self.registration_id, self.session_id = root, registration_id, session_id
        self.client = client
        self.metadata: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {"type": "custom", "registration_id": self.registration_id}

    async def stream(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[str]:
        turns = [m for m in messages if m.role != "system"]
        body = {"registration_id": self.registration_id, "session_id": self.session_id,
                "message": turns[-1].content if turns else "",
                "history": [{"role": m.role, "content": m.content} for m in turns[:-1]]}
        data = await _post(self.client, f"{self.root}/v1/chat", body)
        reply = data.get("reply")
        if not isinstance(reply, str):
            raise ApiError(502, "backend_invalid_reply", "The chat backend's reply has no `reply` text.")
        meta = data.get("metadata")
        self.metadata = {"backend": "custom", "registration_id": self.registration_id,
                         **(meta if isinstance(meta, dict) else {})}
        yield reply

    async def aclose(self) -> None:
        await self.client.aclose()


async def chat_for(svc: Services, backend: BackendConfig, session_id: str | None) -> LocalChat | BackendChat:
    """The session's chat model (see the module docstring); ApiError with a readable message otherwise."""
    settings = get_settings()
    custom = backend.provider == "custom" or backend.registration_id is not None
    if (backend.api_key or backend.base_url) and not settings.allow_frontend_backend_auth:
        raise ApiError(403, "backend_auth_not_allowed", "This server does not accept backend credentials from "
                       "clients (backend.api_key, backend.base_url); use backend.registration_id.")
    if not settings.backend_base_url:
        if custom:
            raise ApiError(400, "no_backend", "This server has no external chat backend configured "
                           "(BACKEND_BASE_URL); omit `backend` to talk to the server's own LLM.")
        svc.llm.handle()
        return LocalChat(svc)
    if not custom and not settings.default_registration_id:
        svc.llm.handle()
        return LocalChat(svc)
    root = settings.backend_base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {settings.backend_api_key}"} if settings.backend_api_key else {}
    client = httpx.AsyncClient(headers=headers, timeout=TIMEOUT_S)
    try:
        registration = backend.registration_id or (
            await _register(client, root, backend) if backend.provider == "custom" else settings.default_registration_id)
    except BaseException:
        await client.aclose()
        raise
    assert registration is not None
    return BackendChat(root, registration, session_id, client)


async def _register(client: httpx.AsyncClient, root: str, backend: BackendConfig) -> str:
    body = {"provider": backend.provider, "api_key": backend.api_key, "model": backend.model,
            "base_url": backend.base_url, "system_prompt": backend.system_prompt}
    key = json.dumps([root, body], sort_keys=True)
    if key not in _registrations:
        data = await _post(client, f"{root}/v1/register", body)
        registration = data.get("registration_id")
        if not isinstance(registration, str) or not registration:
            raise ApiError(502, "backend_invalid_reply", "The chat backend's /v1/register reply has no "
                           "`registration_id`.")
        _registrations[key] = registration
    return _registrations[key]


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST JSON; the backend's failures become readable errors without its internals."""
    path = url.rsplit("/v1/", 1)[-1]
    try:
        response = await client.post(url, json=body)
    except (httpx.HTTPError, asyncio.TimeoutError) as exc:
        raise ApiError(502, "backend_unreachable", f"The chat backend did not answer /v1/{path} "
                       f"({type(exc).__name__}).") from exc
    if response.status_code >= 400:
        raise ApiError(502, "backend_error", f"The chat backend answered /v1/{path} with HTTP {response.status_code}.")
    try:
        data = response.json()
    except ValueError as exc:
        raise ApiError(502, "backend_invalid_reply", f"The chat backend's /v1/{path} reply is not JSON.") from exc
    if not isinstance(data, dict):
        raise ApiError(502, "backend_invalid_reply", f"The chat backend's /v1/{path} reply is not a JSON object.")
    return data
