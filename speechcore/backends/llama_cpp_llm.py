"""llama.cpp GGUF chat model (SmolLM2-135M-Instruct on the CPU profile), streamed tokens."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ChatMessage, ModelInfo
from speechcore.spec import BackendSpec


class LlamaCppLLM:
    def __init__(self, spec: BackendSpec):
        from llama_cpp import Llama

        self.spec = spec
        root = Path(resolve(spec.model))
        self.path = str(root if root.suffix == ".gguf" else next(root.glob("*.gguf")))
        opts = spec.options
        self.llm = Llama(model_path=self.path, n_ctx=int(opts.get("n_ctx", 2048)),
                         n_threads=int(opts.get("threads", 2)), verbose=False,
                         chat_format=opts.get("chat_format", "chatml"), seed=int(opts.get("seed", 0)))

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
