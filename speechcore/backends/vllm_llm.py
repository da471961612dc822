"""vLLM chat model for the GPU profile (CUDA only). Imported lazily.

Uses vLLM's async engine so many concurrent chats share continuous batching;
tokens are streamed as the engine produces them.
"""
from __future__ import annotations

import uuid
from typing import AsyncIterator

from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ChatMessage, ModelInfo
from speechcore.spec import BackendOptions, BackendSpec


class VllmOptions(BackendOptions):
    gpu_memory_utilization: float = 0.4
    max_model_len: int = 8192


class VllmLLM:
    Options = VllmOptions

    def __init__(self, spec: BackendSpec):
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.spec = spec
        self.path = resolve(spec.model)
        opts = VllmOptions.model_validate(spec.options)
        args = AsyncEngineArgs(model=self.path, gpu_memory_utilization=opts.gpu_memory_utilization,
                               max_model_len=opts.max_model_len)
        self.engine = AsyncLLMEngine.from_engine_args(args)

    def info(self) -> ModelInfo:
        return ModelInfo(role="llm", name=self.spec.model, backend="vllm", device="cuda",
                         path=self.path, size_bytes=size_bytes(self.path))

    async def stream(self, messages: list[ChatMessage], max_tokens: int = 256,
                     temperature: float = 0.7) -> AsyncIterator[str]:
        from vllm import SamplingParams

        tokenizer = await self.engine.get_tokenizer()
        prompt = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                               tokenize=False, add_generation_prompt=True)
        sent = 0
        async for out in self.engine.generate(prompt, SamplingParams(max_tokens=max_tokens, temperature=temperature),
                                              request_id=uuid.uuid4().hex):
            text = out.outputs[0].text
            if len(text) > sent:
                yield text[sent:]
                sent = len(text)
