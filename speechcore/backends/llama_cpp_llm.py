"""llama.cpp GGUF chat model (SmolLM2-135M-Instruct on the CPU profile), streamed tokens.

One llama.cpp context runs one sequence at a time, so the backend keeps a pool
of `contexts` contexts (the weights are memory-mapped once and shared; each
context has its own KV cache): that many requests generate at the same time,
the rest wait for a free context. On 2 cores, 2 contexts of 1 thread each beat
1 context of 2 threads as soon as two requests overlap (bench/chat.py).
"""
from __future__ import annotations

import queue
from pathlib import Path
from typing import Any, Iterator

from speechcore.backends.chat import CHATML_END, chatml_prompt
from speechcore.errors import ApiError
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ChatMessage, GenerationParams, Generated, ModelInfo
from speechcore.spec import BackendOptions, BackendSpec


class LlamaCppOptions(BackendOptions):
    n_ctx: int = 2048
    """Context length of each context, prompt and answer together."""
    threads: int = 2
    """CPU threads per context."""
    contexts: int = 1
    """Requests generated at the same time (one llama.cpp context each)."""
    chat_format: str = "chatml"
    """How messages become a prompt: `chatml` is ours (`chatml_prompt`, every system message in place);
    any other name is a llama-cpp-python chat format."""
    seed: int = 0


class LlamaCppLLM:
    Options = LlamaCppOptions

    def __init__(self, spec: BackendSpec):
        from llama_cpp import Llama, llama_chat_format

        self.spec = spec
        root = Path(resolve(spec.model))
        self.path = str(root if root.suffix == ".gguf" else next(root.glob("*.gguf")))
        self.opts = LlamaCppOptions.model_validate(spec.options)
        self.formatter = None if self.opts.chat_format == "chatml" else \
            getattr(llama_chat_format, f"format_{self.opts.chat_format}")
        self.parallel = max(1, self.opts.contexts)
        """How many requests generate at once (callers may queue the rest themselves)."""
        self.pool: queue.Queue[Any] = queue.Queue()
        for _ in range(self.parallel):
            self.pool.put(Llama(model_path=self.path, n_ctx=self.opts.n_ctx, n_threads=self.opts.threads,
                                verbose=False, seed=self.opts.seed))

    def info(self) -> ModelInfo:
        return ModelInfo(role="llm", name=self.spec.model, backend="llama-cpp", device="cpu",
                         path=self.path, size_bytes=size_bytes(self.path),
                         extra={"context": self.opts.n_ctx, "contexts": self.opts.contexts})

    def _prompt(self, messages: list[ChatMessage]) -> tuple[str, Any]:
        """The prompt text and the format's stop string(s)."""
        if self.formatter is None:
            return chatml_prompt(messages), CHATML_END
        rendered = self.formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return rendered.prompt, rendered.stop

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[Generated]:
        """Pieces of the answer as llama.cpp samples them; closing the iterator stops generation."""
        text, stop = self._prompt(messages)
        llm = self.pool.get()
        try:
            prompt_tokens = len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))
            room = self.opts.n_ctx - prompt_tokens
            if room < 1:
                raise ApiError(400, "context_length_exceeded",
                               f"The messages take {prompt_tokens} tokens; this model's context is "
                               f"{self.opts.n_ctx} tokens. Shorten the messages.", param="messages")
            stops = [s for s in [stop, *params.stop] if isinstance(s, str) and s]
            chunks = llm.create_completion(
                text, max_tokens=min(params.max_tokens, room), temperature=params.temperature,
                top_p=params.top_p, stop=stops, seed=params.seed, presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty, stream=True)
            finish, produced = "length", 0
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice["text"]:
                    produced += 1      # llama.cpp streams one token per piece
                    yield Generated(text=choice["text"])
                finish = choice.get("finish_reason") or finish
            yield Generated(finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=produced)
        finally:
            self.pool.put(llm)

    def stream(self, messages: list[ChatMessage], max_tokens: int = 256,
               temperature: float = 0.7) -> Iterator[str]:
        """Text pieces only (the voice engines' view)."""
        for piece in self.generate(messages, GenerationParams(max_tokens=max_tokens, temperature=temperature)):
            if piece.text:
                yield piece.text
