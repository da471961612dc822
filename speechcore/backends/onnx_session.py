"""onnxruntime session options shared by the CPU backends."""
from __future__ import annotations

from typing import Any


def cpu_session_options(threads: int) -> Any:
    """`threads` intra-op threads that sleep rather than spin when they run out of work.

    The CPU profile runs several models in separate processes on few cores. A spinning ORT thread pool
    holds its cores while it waits, and the LLM thread beside it gets none: Piper's first clause took
    272 ms (median) with spinning against 157 ms without while llama.cpp generated on the other thread
    (2 cores; `bench/voice_chat.py`, README "Voice chat").
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
