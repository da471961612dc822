"""Rendering chat messages into a prompt for the backends that take raw text (llama.cpp)."""
from __future__ import annotations

from speechcore.schemas import ChatMessage

CHATML_END = "<|im_end|>"


def chatml_prompt(messages: list[ChatMessage]) -> str:
    """ChatML with every message in its place: a system message later in the conversation (the voice
    chat's follow-up instruction) stays where it is; llama-cpp-python's `chatml` format kept only the
    first system message and dropped the rest. A conversation that opens with no system message gets an empty system block, as llama-cpp-python
    renders it (SmolLM2's answers depend on it); no default system prompt; empty messages are skipped."""
    turns = [f"<|im_start|>{m.role}\n{m.content}{CHATML_END}\n" for m in messages if m.content]
    if not messages or messages[0].role != "system":   # as llama-cpp-python: the system block is always there
        turns.insert(0, f"<|im_start|>system\n{CHATML_END}\n")
    return "".join(turns) + "<|im_start|>assistant\n"

