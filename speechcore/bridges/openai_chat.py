"""A ChatModel over any OpenAI-compatible chat server: `POST {base_url}/chat/completions`, `stream: true`.

Server-sent events are read as they arrive (`data: {...}` lines, `data: [DONE]`
at the end); each chunk's `choices[0].delta.content` is one text delta.
Closing the stream (a barge-in) closes the HTTP response, which stops a
server that watches its client.
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

import httpx

from speechcore.bridges.common import checked_url
from speechcore.errors import ApiError
from speechcore.schemas import ChatMessage
from speechcore.sessions.conversation import ChatOptions


class OpenAIChat:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0):
        self.base_url = checked_url(base_url, ("http", "https"), "llm_base_url").rstrip("/")
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s

    async def stream(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[str]:
        body = {"model": self.model, "stream": True, "max_tokens": options.max_tokens,
                "temperature": options.temperature,
                "messages": [{"role": m.role, "content": m.content} for m in messages]}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s, connect=5.0)) as client:
                async with client.stream("POST", url, json=body, headers=headers) as response:
                    if response.status_code != 200:
                        raise ApiError(502, "llm_error", f"The LLM server at {self.base_url} answered "
                                       f"{response.status_code}: {_error_message(await response.aread())}")
                    async for line in response.aiter_lines():
                        delta = _delta(line)
                        if delta is None:
                            break
                        if delta:
                            yield delta
        except httpx.HTTPError as exc:
            raise ApiError(502, "llm_unreachable", f"The LLM server at {self.base_url} cannot be reached "
                           f"({type(exc).__name__}).") from exc


def _delta(line: str) -> str | None:
    """The text of one SSE line ('' for lines without text), None at `[DONE]`."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        chunk: Any = json.loads(data)
        content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ApiError(502, "llm_error", "The LLM server sent a chunk that is not an OpenAI chat chunk.") from exc
    return content if isinstance(content, str) else ""


def _error_message(body: bytes) -> str:
    """The server's own error message (OpenAI's shape) or the start of its body."""
    try:
        data = json.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message[:300]
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")
