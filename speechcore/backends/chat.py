"""Rendering chat messages into a prompt for the backends that take raw text (llama.cpp)."""
from __future__ import annotations

from speechcore.schemas import ChatMessage

CHATML_END = "<|im_end|>"


def chatml_prompt(messages: list[ChatMessage]) -> str:
    """ChatML with every message in its place: a system message later in the conversation (the voice
    chat's follow-up instruction) stays where it is; llama-cpp-python's `chatml` format kept only the
    first system message and dropped the rest. As there, the prompt always opens with a system block,
    empty when the conversation has none (SmolLM2's answers depend on it). Empty messages are skipped."""
    kept = [m for m in messages if m.content]
    if not kept or kept[0].role != "system":
        kept.insert(0, ChatMessage("system", ""))
    return "".join(f"<|im_start|>{m.role}\n{m.content}{CHATML_END}\n" for m in kept) + "<|im_start|>assistant\n"
