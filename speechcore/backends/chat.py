"""Rendering chat messages into a prompt for the backends that take raw text (llama.cpp)."""
from __future__ import annotations

from speechcore.schemas import ChatMessage

CHATML_END = "<|im_end|>"


def chatml_prompt(messages: list[ChatMessage]) -> str:
    """ChatML with every message in its place: a system message later in the conversation (the voice
    chat's follow-up instruction) stays where it is; llama-cpp-python's `chatml` format kept only the
    first system message and dropped the rest. No default system prompt; empty messages are skipped."""
    turns = [f"<|im_start|>{m.role}\n{m.content}{CHATML_END}\n" for m in messages if m.content]
    return "".join(turns) + "<|im_start|>assistant\n"

