"""Model backends behind one small Protocol per role (see protocols.py).

`load_backend(role, spec)` picks the implementation named by `spec.backend`;
each implementation imports its heavy library lazily, so the GPU-only ones
(NeMo, SpeechBrain, Coqui, vLLM) cost nothing on the CPU profile.
"""
from __future__ import annotations

import importlib

from speechcore.spec import BackendSpec

_BACKENDS = {
    ("asr", "faster-whisper"): "speechcore.backends.whisper_asr:FasterWhisperASR",
    ("asr", "nemo"): "speechcore.backends.nemo_asr:NemoASR",
    ("vad", "silero-onnx"): "speechcore.backends.silero_vad:SileroVAD",
    ("speaker_embedding", "resemblyzer"): "speechcore.backends.resemblyzer_embedding:ResemblyzerEmbedding",
    ("speaker_embedding", "speechbrain-ecapa"): "speechcore.backends.ecapa_embedding:EcapaEmbedding",
    ("tts", "piper"): "speechcore.backends.piper_tts:PiperTTS",
    ("tts", "coqui-xtts"): "speechcore.backends.xtts_tts:XttsTTS",
    ("llm", "llama-cpp"): "speechcore.backends.llama_cpp_llm:LlamaCppLLM",
    ("llm", "vllm"): "speechcore.backends.vllm_llm:VllmLLM",
    ("anti_spoof", "onnx-antispoof"): "speechcore.backends.onnx_antispoof:OnnxAntiSpoof",
    ("voice_profile", "voice2gender"): "speechcore.backends.voice_profile:Voice2GenderProfile",
}


def backend_names(role: str) -> list[str]:
    return [b for r, b in _BACKENDS if r == role]


def load_backend(role: str, spec: BackendSpec):
    target = _BACKENDS.get((role, spec.backend))
    if target is None:
        raise ValueError(f"No {role} backend named {spec.backend!r}; choose one of {backend_names(role)}")
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)(spec)
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"The {spec.backend} {role} backend needs the Python package {exc.name!r}, which is "
                           f"not installed: pip install -r requirements-gpu.txt (GPU profile)") from exc
