"""OpenAI-compatible chat completions (`POST /v1/chat/completions`), streamed or not.

Served by the `llm` deployment. Behaves as OpenAI's API for what it supports
(text messages, sampling controls, `stop`, `n=1`, usage, SSE chunks ending in
`[DONE]`); features it cannot honour (tools, images, `n>1`, logprobs, JSON
mode) are refused with a 400 naming the parameter instead of being ignored.
Unknown fields that change nothing here (`user`, `metadata`, `store`...) are
accepted, as OpenAI-compatible servers do.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from graphs.routers import services
from graphs.routers.openai_audio import ERRORS
from graphs.services import Services
from speechcore.errors import ApiError
from speechcore.schemas import ChatMessage, GenerationParams, Generated
from speechcore.settings import get_settings

router = APIRouter(prefix="/v1", tags=["openai compatible"])

UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logit_bias", "audio", "modalities",
               "prediction", "parallel_tool_calls")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logprobs: bool = False
    response_format: dict[str, Any] | None = None

    def params(self) -> GenerationParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        wanted = self.max_completion_tokens or self.max_tokens or get_settings().llm_max_tokens
        return GenerationParams(max_tokens=wanted, temperature=self.temperature, top_p=self.top_p, stop=stop,
                                seed=self.seed, presence_penalty=self.presence_penalty,
                                frequency_penalty=self.frequency_penalty)

    def chat(self) -> list[ChatMessage]:
        return [ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
                for m in self.messages]


def _check(body: ChatRequest, svc: Services) -> None:
    """400/404 for what this server cannot do, named by parameter, before any model work."""
    model = svc.spec.role("llm").model
    if body.model != model:
        raise ApiError(404, "model_not_found", f"The model '{body.model}' does not exist; this server "
                       f"serves '{model}'", param="model")
    if body.n != 1:
        raise ApiError(400, "unsupported_value", "Only n=1 is supported.", param="n")
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    if len(stops) > 4 or any(not s for s in stops):
        raise ApiError(400, "invalid_value", "`stop` takes up to 4 non-empty strings.", param="stop")
    given = set(body.model_extra or {}) & set(UNSUPPORTED)
    if body.logprobs:
        given.add("logprobs")
    if body.response_format and body.response_format.get("type") != "text":
        given.add("response_format")
    if given:
        name = sorted(given)[0]
        raise ApiError(400, "unsupported_parameter", f"`{name}` is not supported by this server.", param=name)


async def _next(pieces: AsyncIterator[Generated]) -> Generated:
    piece = await anext(pieces, None)
    if piece is None:       # the model stopped without its closing piece (a replica died)
        raise ApiError(503, "llm_failed", "The language model stopped before finishing; try again.")
    return piece


def _usage(last: Generated) -> dict[str, int]:
    return {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.completion_tokens,
            "total_tokens": last.prompt_tokens + last.completion_tokens}


class Completion:
    """The identity shared by every chunk of one answer."""

    def __init__(self, model: str):
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model

    def whole(self, text: str, last: Generated) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "logprobs": None, "finish_reason": last.finish_reason}],
                "usage": _usage(last)}

    def chunk(self, delta: dict[str, Any], finish: str | None = None,
              usage: dict[str, int] | None = None) -> str:
        choices = [] if usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices, **({"usage": usage} if usage else {})}
        return f"data: {json.dumps(body)}\n\n"


async def _events(first: Generated, rest: AsyncIterator[Generated], reply: Completion,
                  include_usage: bool) -> AsyncIterator[str]:
    yield reply.chunk({"role": "assistant", "content": ""})
    piece = first
    try:
        while True:
            if piece.finish_reason:
                yield reply.chunk({}, piece.finish_reason)
                if include_usage:
                    yield reply.chunk({}, usage=_usage(piece))
                break
            yield reply.chunk({"content": piece.text})
            piece = await _next(rest)
    except ApiError as err:        # after the headers: OpenAI's way is an error event in the stream
        yield f"data: {json.dumps(ERRORS.body(err))}\n\n"
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", summary="OpenAI-compatible chat completion (SSE when stream=true)")
async def chat_completions(body: ChatRequest, svc: Services = Depends(services)):
    _check(body, svc)
    pieces = svc.llm.generate(body.chat(), body.params())
    first = await _next(pieces)         # errors before the first token are plain HTTP errors
    reply = Completion(body.model)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(first, pieces, reply, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    text, piece = [], first
    while not piece.finish_reason:
        text.append(piece.text)
        piece = await _next(pieces)
    return reply.whole("".join(text), piece)
