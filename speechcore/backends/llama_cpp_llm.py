"""llama.cpp GGUF chat model (SmolLM2-135M-Instruct on the CPU profile), streamed tokens."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ChatMessage, ModelInfo
from speechcore.spec import BackendOptions, BackendSpec


class LlamaCppOptions(BackendOptions):
    n_ctx: int = 2048
    threads: int = 2
    chat_format: str = "chatml"
    seed: int = 0


class LlamaCppLLM:
    Options = LlamaCppOptions

    def __init__(self, spec: BackendSpec):
        from llama_cpp import Llama

        self.spec = spec
        root = Path(resolve(spec.model))
        self.path = str(root if root.suffix == ".gguf" else next(root.glob("*.gguf")))
        opts = LlamaCppOptions.model_validate(spec.options)
        self.llm = Llama(model_path=self.path, n_ctx=opts.n_ctx, n_threads=opts.threads, verbose=False,
                         chat_format=opts.chat_format, seed=opts.seed)

    def info(self) -> ModelInfo:
        return ModelInfo(role="llm", name=self.spec.model, backend="llama-cpp", device="cpu",
                         path=self.path, size_bytes=size_bytes(self.path),
                         extra={"context": self.llm.n_ctx()})

    def stream(self, messages: list[ChatMessage], max_tokens: int = 256,
               temperature: float = 0.7) -> Iterator[str]:
        chunks = self.llm.create_chat_completion(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            max_tokens=max_tokens, temperature=temperature, stream=True)
        for chunk in chunks:
            token = chunk["choices"][0]["delta"].get("content")
            if token:
                yield token
