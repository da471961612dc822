"""LLM deployment (llama.cpp GGUF on CPU, vLLM on GPU); streams answer pieces.

No lock: the llama.cpp backend runs `contexts` requests at once from its own pool
(requests wait for a free context on this replica's event loop, so one abandoned
while it waits costs no model work), and vLLM batches every request in flight.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import AsyncIterator

from ray import serve

from deployments.base import ModelDeployment, iterate_in_thread
from speechcore.schemas import ChatMessage, GenerationParams, Generated


@serve.deployment(max_ongoing_requests=16, ray_actor_options={"num_cpus": 0})
class LLMDeployment(ModelDeployment):
    role = "llm"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self._slots = asyncio.Semaphore(getattr(self.backend, "parallel", 1))

    async def generate(self, messages: list[ChatMessage], params: GenerationParams) -> AsyncIterator[Generated]:
        """Async generator of answer pieces; call with handle.options(stream=True)."""
        pieces = self.backend.generate(messages, params)
        if inspect.isasyncgen(pieces):
            async for piece in pieces:
                yield piece
            return
        async with self._slots:
            async for piece in iterate_in_thread(pieces):
                yield piece

    async def prefill(self, messages: list[ChatMessage]) -> bool:
        """Read a prompt ahead of its request where the backend keeps what it read (llama.cpp) and a
        context is free; never waits for one (False)."""
        prefill = getattr(self.backend, "prefill", None)
        if prefill is None or self._slots.locked():
            return False
        async with self._slots:
            return bool(await asyncio.to_thread(prefill, messages))

    async def stream(self, messages: list[ChatMessage], max_tokens: int = 256,
                     temperature: float = 0.7) -> AsyncIterator[str]:
        """Text pieces only (voice sessions)."""
        async for piece in self.generate(messages, GenerationParams(max_tokens=max_tokens, temperature=temperature)):
            if piece.text:
                yield piece.text
