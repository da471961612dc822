"""llama.cpp GGUF chat model (SmolLM2-135M-Instruct on the CPU profile), streamed tokens.

One llama.cpp context runs one sequence at a time, so the backend keeps a pool
of `contexts` contexts (the weights are memory-mapped once and shared; each
context has its own KV cache): that many requests generate at the same time,
the rest wait for a free context. On 2 cores, 2 contexts of 1 thread each beat
1 context of 2 threads as soon as two requests overlap (bench/chat.py); the CPU
profile runs 4, so four voice chats each keep their history read (bench/voice_chat.py).

A context keeps the tokens it last evaluated, and llama.cpp evaluates only what
follows the part a new prompt shares with them. A request therefore takes the
free context that shares the longest prefix with its prompt: a conversation's
next turn finds its system prompt, history and last answer already evaluated
and pays only for the new message (bench/voice_chat.py).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator

from speechcore.backends.chat import CHATML_END, chatml_prompt
from speechcore.errors import ApiError
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ChatMessage, GenerationParams, Generated, ModelInfo
from speechcore.spec import BackendOptions, BackendSpec


PREFILL_MAX_NEW_TOKENS = 64
"""A read ahead never reads more than this: a context that holds less of the prompt serves another
conversation (more conversations than contexts), and its history is worth more than the head start."""


class LlamaCppOptions(BackendOptions):
    n_ctx: int = 2048
    """Context length of each context, prompt and answer together."""
    threads: int = 2
    """CPU threads per context while it generates (one token at a time)."""
    threads_batch: int | None = None
    """CPU threads for reading a prompt (many tokens at once) while no other context is busy; with another
    context busy, `threads`. None: `threads`. Prompt reading divides well across threads and is on the
    first token's path; two contexts each reading on every core slow each other down (bench/chat.py)."""
    contexts: int = 1
    """Requests generated at the same time (one llama.cpp context each)."""
    chat_format: str = "chatml"
    """How messages become a prompt: `chatml` is ours (`chatml_prompt`, every system message in place);
    any other name is a llama-cpp-python chat format."""
    seed: int = 0


class ContextPool:
    """Free llama.cpp contexts; `take` waits for one and picks the one whose cached tokens share the longest
    prefix with the prompt (ties: the one free the longest)."""

    def __init__(self, contexts: list[Any]):
        self._free = list(contexts)
        self._size = len(contexts)
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self._size - len(self._free)

    def take(self, tokens: list[int], wait: bool = True, max_unread: int | None = None) -> Any:
        """A context for `tokens`; None, taking nothing, when `wait` is False and none is free, or when the
        best one lacks more than `max_unread` of the tokens."""
        with self._changed:
            if not wait and not self._free:
                return None
            self._changed.wait_for(lambda: bool(self._free))
            shared, best = max(((shared_prefix(cached_tokens(llm), tokens), llm) for llm in self._free),
                               key=lambda pair: pair[0])
            if max_unread is not None and len(tokens) - shared > max_unread:
                return None
            self._free.remove(best)
            return best

    def give(self, context: Any) -> None:
        with self._changed:
            self._free.append(context)
            self._changed.notify()


def cached_tokens(llm: Any) -> list[int]:
    """The tokens whose keys and values the context holds (llama-cpp-python's `input_ids` up to `n_tokens`)."""
    return list(llm.input_ids[:llm.n_tokens])


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


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
        self._batch_threads = self.opts.threads_batch or self.opts.threads
        contexts = [Llama(model_path=self.path, n_ctx=self.opts.n_ctx, n_threads=self.opts.threads,
                          n_threads_batch=self._batch_threads, verbose=False,
                          seed=self.opts.seed) for _ in range(self.parallel)]
        self._vocab = contexts[0]
        """Tokenizes prompts (the vocabulary is read-only, so this is safe while that context generates)."""
        self.pool = ContextPool(contexts)

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

    def _tokens(self, messages: list[ChatMessage]) -> tuple[list[int], Any]:
        """The prompt's tokens and the format's stop string(s)."""
        text, stop = self._prompt(messages)
        return self._vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True), stop

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[Generated]:
        """Pieces of the answer as llama.cpp samples them; closing the iterator stops generation."""
        tokens, stop = self._tokens(messages)
        prompt_tokens = len(tokens)
        room = self.opts.n_ctx - prompt_tokens
        if room < 1:
            raise ApiError(400, "context_length_exceeded",
                           f"The messages take {prompt_tokens} tokens; this model's context is "
                           f"{self.opts.n_ctx} tokens. Shorten the messages.", param="messages")
        llm = self.pool.take(tokens)
        try:
            self._prompt_threads(llm, alone=self.pool.in_use == 1)
            stops = [s for s in [stop, *params.stop] if isinstance(s, str) and s]
            chunks = llm.create_completion(
                tokens, max_tokens=min(params.max_tokens, room), temperature=params.temperature,
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
            self.pool.give(llm)

    def prefill(self, messages: list[ChatMessage]) -> bool:
        """Read the prompt of `messages` into a free context now, so a request that shares its beginning
        soon after reads only the rest (the voice chat's turn, from its partial transcript while the user
        still speaks). False, reading nothing: no context is free, or the best one lacks more than
        PREFILL_MAX_NEW_TOKENS of the prompt."""
        tokens, _ = self._tokens(messages)
        if len(tokens) >= self.opts.n_ctx:
            return False
        # a context lacking more holds another conversation: reading this one would only evict it
        llm = self.pool.take(tokens, wait=False, max_unread=PREFILL_MAX_NEW_TOKENS)
        if llm is None:
            return False
        try:
            self._prompt_threads(llm, alone=False)    # on `threads`: the speech recognizer is busy meanwhile
            llm.create_completion(tokens, max_tokens=1, temperature=0.0)    # reads the prompt, samples one token
            return True
        finally:
            self.pool.give(llm)

    def _prompt_threads(self, llm: Any, alone: bool) -> None:
        """`threads_batch` for this prompt when the other contexts are idle, else `threads`."""
        import llama_cpp

        batch = self._batch_threads if alone else self.opts.threads
        llama_cpp.llama_set_n_threads(llm.ctx, self.opts.threads, batch)

    def stream(self, messages: list[ChatMessage], max_tokens: int = 256,
               temperature: float = 0.7) -> Iterator[str]:
        """Text pieces only (the voice engines' view)."""
        for piece in self.generate(messages, GenerationParams(max_tokens=max_tokens, temperature=temperature)):
            if piece.text:
                yield piece.text
