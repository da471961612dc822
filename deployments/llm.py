"""LLM deployment (llama.cpp GGUF on CPU, vLLM on GPU); streams tokens."""
from __future__ import annotations

import asyncio
import inspect

from ray import serve

from deployments.base import ModelDeployment
from speechcore.schemas import ChatMessage


@serve.deployment(max_ongoing_requests=16, ray_actor_options={"num_cpus": 0})
class LLMDeployment(ModelDeployment):
    role = "llm"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self._lock = asyncio.Lock()  # one llama.cpp context is not re-entrant; vLLM batches internally

    async def stream(self, messages: list[ChatMessage], max_tokens: int = 256, temperature: float = 0.7):
        """Async generator of text pieces; call with handle.options(stream=True)."""
        if inspect.isasyncgenfunction(self.backend.stream):
            async for token in self.backend.stream(messages, max_tokens, temperature):
                yield token
            return
        async with self._lock:
            tokens = self.backend.stream(messages, max_tokens, temperature)
            while (token := await asyncio.to_thread(next, tokens, None)) is not None:
                yield token
