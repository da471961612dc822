"""The ChatML prompt llama.cpp generates from, without Ray."""
from __future__ import annotations

import pytest

from speechcore.backends.chat import chatml_prompt
from speechcore.schemas import ChatMessage


def test_chatml_keeps_every_system_message_in_place():
    prompt = chatml_prompt([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"),
                            ChatMessage("assistant", ""), ChatMessage("system", "Ask a follow-up.")])
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                      "<|im_start|>system\nAsk a follow-up.<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("system", [[ChatMessage("system", "Be brief.")], [ChatMessage("system", "")], []])
def test_chatml_is_llama_cpp_python_chatml_with_at_most_one_system_message(system):
    llama_chat_format = pytest.importorskip("llama_cpp.llama_chat_format")
    messages = [*system, ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("user", "Bye")]
    theirs = llama_chat_format.format_chatml(messages=[{"role": m.role, "content": m.content} for m in messages])
    assert chatml_prompt(messages) == theirs.prompt


class FakeContext:
    def __init__(self, tokens: list[int]):
        self.input_ids, self.n_tokens = tokens + [0] * 8, len(tokens)


def test_context_pool_gives_the_context_sharing_the_longest_prefix_and_waits_when_none_is_free():
    import threading

    from speechcore.backends.llama_cpp_llm import ContextPool

    system, other = FakeContext([1, 2, 3]), FakeContext([1, 2, 3, 4, 5, 9])
    pool = ContextPool([system, other])
    assert pool.take([1, 2, 3, 4, 5, 6]) is other       # the conversation's own context
    assert pool.take([1, 2, 3, 4, 5, 6]) is system      # the only one left
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(pool.take([7])))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not taken
    pool.give(system)
    waiter.join(5)
    assert taken == [system]


def test_context_pool_can_refuse_a_context_that_lacks_too_much_of_the_prompt():
    from speechcore.backends.llama_cpp_llm import ContextPool

    held = FakeContext([1, 2, 3, 4])
    pool = ContextPool([held])
    assert pool.take([1, 2, 3, 4, 5, 6, 7], wait=False, max_unread=2) is None      # 3 tokens unread
    assert pool.in_use == 0                                                        # nothing taken
    assert pool.take([1, 2, 3, 4, 5, 6], wait=False, max_unread=2) is held
    assert pool.in_use == 1 and pool.take([1], wait=False) is None                 # none free: no waiting


def test_a_conversation_stays_on_the_context_that_holds_its_history():
    """Three turns of one conversation with two contexts: every turn lands on the context of the turn
    before (which holds the system prompt, history and answer), so the other context is never used."""
    pytest.importorskip("llama_cpp")
    from speechcore.backends.llama_cpp_llm import LlamaCppLLM, cached_tokens
    from speechcore.schemas import GenerationParams
    from speechcore.spec import BackendSpec

    llm = LlamaCppLLM(BackendSpec(backend="llama-cpp", model="smollm2-135m",
                                  options={"contexts": 2, "threads": 1, "n_ctx": 512}))
    history = [ChatMessage("system", "Answer in one short sentence.")]
    for question in ("What is the capital of France?", "And of Spain?", "And of Italy?"):
        history.append(ChatMessage("user", question))
        answer = "".join(p.text for p in llm.generate(history, GenerationParams(max_tokens=12, temperature=0)))
        history.append(ChatMessage("assistant", answer))
    used = [c for c in llm.pool._free if c.n_tokens]
    assert len(used) == 1 and len(cached_tokens(used[0])) > 60


def test_a_prompt_is_read_on_threads_batch_only_while_the_other_context_is_idle():
    """Two contexts each reading a prompt on both cores slow each other down (bench/chat.py): a request
    gets `threads_batch` when it is alone, `threads` when another context is busy."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from speechcore.backends.llama_cpp_llm import LlamaCppLLM
    from speechcore.schemas import GenerationParams
    from speechcore.spec import BackendSpec

    llm = LlamaCppLLM(BackendSpec(backend="llama-cpp", model="smollm2-135m",
                                  options={"contexts": 2, "threads": 1, "threads_batch": 2, "n_ctx": 512}))
    params = GenerationParams(max_tokens=8, temperature=0)
    contexts = list(llm.pool._free)
    first = llm.generate([ChatMessage("user", "Count to ten.")], params)
    next(first)                                  # generating: its context stays busy until it is closed
    (later,) = llm.pool._free
    second = llm.generate([ChatMessage("user", "Name a colour.")], params)
    next(second)
    (alone,) = [c for c in contexts if c is not later]
    threads = (llama_cpp.llama_n_threads_batch(alone.ctx), llama_cpp.llama_n_threads_batch(later.ctx))
    first.close()
    second.close()
    assert threads == (2, 1)


def test_prefill_reads_a_prompt_into_a_free_context_and_never_waits():
    pytest.importorskip("llama_cpp")
    from speechcore.backends.llama_cpp_llm import LlamaCppLLM, cached_tokens, shared_prefix
    from speechcore.schemas import GenerationParams
    from speechcore.spec import BackendSpec

    llm = LlamaCppLLM(BackendSpec(backend="llama-cpp", model="smollm2-135m",
                                  options={"contexts": 1, "threads": 1, "n_ctx": 512}))
    partial = [ChatMessage("system", "Answer in one short sentence."), ChatMessage("user", "What is the capital")]
    final = [partial[0], ChatMessage("user", "What is the capital of France?")]
    assert llm.prefill(partial) is True
    (context,) = llm.pool._free
    prompt = llm._vocab.tokenize(llm._prompt(final)[0].encode(), add_bos=True, special=True)
    read = shared_prefix(cached_tokens(context), prompt)
    assert read >= 15 and len(prompt) - read <= 12          # the request has only its last words left to read
    busy = llm.generate(final, GenerationParams(max_tokens=4, temperature=0))
    next(busy)                                               # the only context is generating
    assert llm.prefill(partial) is False                     # no waiting for it
    busy.close()


def test_prefill_does_not_evict_another_conversations_context():
    """With more conversations than contexts, a read ahead that would re-read a whole history into a context
    holding another conversation does nothing (that conversation's next turn keeps its history read)."""
    pytest.importorskip("llama_cpp")
    from speechcore.backends.llama_cpp_llm import PREFILL_MAX_NEW_TOKENS, LlamaCppLLM, cached_tokens
    from speechcore.schemas import GenerationParams
    from speechcore.spec import BackendSpec

    llm = LlamaCppLLM(BackendSpec(backend="llama-cpp", model="smollm2-135m",
                                  options={"contexts": 1, "threads": 1, "n_ctx": 1024}))
    system = ChatMessage("system", "Answer in one short sentence.")
    other = [system, ChatMessage("user", "Tell me about the sea.")]
    "".join(p.text for p in llm.generate(other, GenerationParams(max_tokens=8, temperature=0)))
    (context,) = llm.pool._free
    held = cached_tokens(context)
    long_history = [system, *[ChatMessage(role, "word " * 20) for role in ("user", "assistant") * 3],
                    ChatMessage("user", "And the mountains")]
    assert len(llm._vocab.tokenize(llm._prompt(long_history)[0].encode(), special=True)) > PREFILL_MAX_NEW_TOKENS
    assert llm.prefill(long_history) is False
    assert cached_tokens(context) == held
