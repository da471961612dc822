"""`POST /v1/chat/completions` under Ray Serve with the real LLM (SmolLM2-135M on llama.cpp), driven by
the official `openai` client: streamed and whole answers agree, sampling controls and limits hold."""
from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

COUNT = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", timeout=120)


@pytest.fixture(scope="module")
def model(client) -> str:
    chat = [m.id for m in client.models.list().data if "smollm" in m.id]
    assert chat, "the LLM is listed in /v1/models"
    return chat[0]


def answer(client: OpenAI, model: str, **kw) -> tuple[str, object]:
    r = client.chat.completions.create(model=model, messages=kw.pop("messages", COUNT), temperature=0, **kw)
    return r.choices[0].message.content, r


def streamed(client: OpenAI, model: str, **kw) -> tuple[str, list]:
    chunks = list(client.chat.completions.create(model=model, messages=kw.pop("messages", COUNT), temperature=0,
                                                 stream=True, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def test_answer_whole_and_streamed_are_the_same_text(client, model):
    text, whole = answer(client, model, max_tokens=40)
    assert "1, 2, 3" in text and whole.choices[0].finish_reason == "stop", text
    assert whole.choices[0].message.role == "assistant" and whole.object == "chat.completion"
    assert whole.usage.prompt_tokens > 10 and 10 < whole.usage.completion_tokens <= 40
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    again, chunks = streamed(client, model, max_tokens=40, stream_options={"include_usage": True})
    assert again == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(chunks) > 10                                  # token by token, not one blob
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_max_tokens_and_stop_cut_the_answer(client, model):
    full, _ = answer(client, model, max_tokens=40)
    short, r = answer(client, model, max_completion_tokens=4)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4
    assert full.startswith(short) and len(short) < len(full)
    cut, r = answer(client, model, max_tokens=40, stop=[", 5"])
    assert r.choices[0].finish_reason == "stop" and full.startswith(cut) and "5" not in cut, cut
    cut, _ = streamed(client, model, max_tokens=40, stop=", 3")
    assert cut == "1, 2", cut


def test_conversation_roles_reach_the_model(client, model):
    """An assistant turn in the history changes the answer (the messages are really rendered)."""
    first, _ = answer(client, model, max_tokens=30,
                      messages=[{"role": "system", "content": "You answer in one short sentence."},
                                {"role": "user", "content": "What colour is the sky?"}])
    second, _ = answer(client, model, max_tokens=30,
                       messages=[{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                                 {"role": "user", "content": "What colour is the sky?"},
                                 {"role": "assistant", "content": "Green."},
                                 {"role": "user", "content": "Repeat your last answer."}])
    assert first and second and first != second


def test_concurrent_requests_do_not_mix(base_url, model):
    """Four streams at once each get exactly the answer they get alone (pooled contexts, no cross-talk)."""
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", timeout=120)
    questions = ["Count from 1 to 10, separated by commas.", "Name three colours.",
                 "What is the capital of France?", "Say hello in French."]

    async def ask(q: str) -> str:
        parts = []
        async for c in await client.chat.completions.create(model=model, temperature=0, max_tokens=24,
                                                            stream=True, messages=[{"role": "user", "content": q}]):
            parts.append(c.choices[0].delta.content or "" if c.choices else "")
        return "".join(parts)

    async def scenario():
        alone = [await ask(q) for q in questions]
        together = await asyncio.gather(*[ask(q) for q in questions])
        return alone, together

    alone, together = asyncio.run(scenario())
    assert list(together) == alone and len(set(alone)) == 4


@pytest.mark.parametrize("kw, status, param", [
    ({"model": "gpt-4o"}, 404, "model"),
    ({"n": 2}, 400, "n"),
    ({"temperature": 3}, 400, "temperature"),
    ({"messages": []}, 400, "messages"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
    ({"response_format": {"type": "json_object"}}, 400, "response_format"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, None),
    ({"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "messages"),
])
def test_bad_requests_answer_in_openai_shape(base_url, model, kw, status, param):
    body = {"model": model, "messages": COUNT, **kw}
    r = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=120)
    err = r.json()["error"]
    assert r.status_code == status and err["message"] and err["type"], r.text
    if param:
        assert err["param"] == param or err["param"].startswith(param), r.text


def test_openai_client_raises_typed_errors(client, model):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=COUNT)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi " * 5000}])
    assert info.value.code == "context_length_exceeded"


def test_client_leaving_mid_stream_frees_the_model(base_url, client, model):
    """A stream dropped after two chunks stops generating: the next request is answered normally."""
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", timeout=120,
                      json={"model": model, "messages": COUNT, "stream": True, "max_tokens": 400}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    text, _ = answer(client, model, max_tokens=40)
    assert "1, 2, 3" in text
