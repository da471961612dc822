"""vLLM chat model for the GPU profile (CUDA only). Imported lazily.

Uses vLLM's async engine so many concurrent chats share continuous batching;
tokens are streamed as the engine produces them.
"""
from __future__ import annotations

import uuid
from typing import AsyncIterator

from speechcore.errors import ApiError
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ChatMessage, GenerationParams, Generated, ModelInfo
from speechcore.spec import BackendOptions, BackendSpec


class VllmOptions(BackendOptions):
    gpu_memory_utilization: float = 0.4
    max_model_len: int = 8192
    enable_prefix_caching: bool = True
    """Reuse the KV blocks of a prompt's shared prefix (a conversation's system prompt and history)."""


class VllmLLM:
    Options = VllmOptions

    def __init__(self, spec: BackendSpec):
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.spec = spec
        self.path = resolve(spec.model)
        self.opts = opts = VllmOptions.model_validate(spec.options)
        args = AsyncEngineArgs(model=self.path, gpu_memory_utilization=opts.gpu_memory_utilization,
                               max_model_len=opts.max_model_len, enable_prefix_caching=opts.enable_prefix_caching)
        self.engine = AsyncLLMEngine.from_engine_args(args)

    def info(self) -> ModelInfo:
        return ModelInfo(role="llm", name=self.spec.model, backend="vllm", device="cuda",
                         path=self.path, size_bytes=size_bytes(self.path))

    async def generate(self, messages: list[ChatMessage], params: GenerationParams) -> AsyncIterator[Generated]:
        """Pieces of the answer as the engine produces them; the engine batches concurrent requests."""
        from vllm import SamplingParams

        tokenizer = await self.engine.get_tokenizer()
        prompt = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                               tokenize=False, add_generation_prompt=True)
        prompt_tokens = len(tokenizer.encode(prompt))
        room = self.opts.max_model_len - prompt_tokens
        if room < 1:
            raise ApiError(400, "context_length_exceeded",
                           f"The messages take {prompt_tokens} tokens; this model's context is "
                           f"{self.opts.max_model_len} tokens. Shorten the messages.", param="messages")
        sampling = SamplingParams(max_tokens=min(params.max_tokens, room), temperature=params.temperature,
                                  top_p=params.top_p, stop=params.stop or None, seed=params.seed,
                                  presence_penalty=params.presence_penalty,
                                  frequency_penalty=params.frequency_penalty)
        sent, out = 0, None
        async for out in self.engine.generate(prompt, sampling, request_id=uuid.uuid4().hex):
            text = out.outputs[0].text
            if len(text) > sent:
                yield Generated(text=text[sent:])
                sent = len(text)
        done = out.outputs[0] if out is not None else None
        yield Generated(finish_reason=(done.finish_reason if done and done.finish_reason == "length" else "stop"),
                        prompt_tokens=prompt_tokens, completion_tokens=len(done.token_ids) if done else 0)

    async def stream(self, messages: list[ChatMessage], max_tokens: int = 256,
                     temperature: float = 0.7) -> AsyncIterator[str]:
        """Text pieces only (the voice engines' view)."""
        async for piece in self.generate(messages, GenerationParams(max_tokens=max_tokens, temperature=temperature)):
            if piece.text:
                yield piece.text
