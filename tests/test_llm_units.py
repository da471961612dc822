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
