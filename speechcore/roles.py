"""The role table: every model role of the graph, its deployment class and its backends.

Adding a role touches this table, its deployment, its backend and the two
profiles; the graph spec (`speechcore.spec`), the app builder (`graphs.app`)
and the backend lookup (`speechcore.backends`) are derived from it. Classes are
named by import path so this module stays light (no Ray, no model libraries).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Role:
    deployment: str
    """`module:Class` of the Serve deployment that serves the role."""
    backends: dict[str, str] = field(default_factory=dict)
    """Backend name (a profile's `backend:`) -> `module:Class` implementing the role's Protocol."""
    per_model: bool = False
    """One deployment per configured model (ASR: `asr: {name: {deployment: ...}}`), else one deployment named as the role."""


_B = "speechcore.backends."

ROLES: dict[str, Role] = {
    "asr": Role("deployments.asr:ASRDeployment",
                {"faster-whisper": _B + "whisper_asr:FasterWhisperASR", "nemo": _B + "nemo_asr:NemoASR",
                 "moonshine-onnx": _B + "moonshine_asr:MoonshineASR"},
                per_model=True),
    "vad": Role("deployments.vad:VADDeployment", {"silero-onnx": _B + "silero_vad:SileroVAD"}),
    "speaker_embedding": Role("deployments.speaker_embedding:SpeakerEmbeddingDeployment",
                              {"resemblyzer": _B + "resemblyzer_embedding:ResemblyzerEmbedding",
                               "eres2net-onnx": _B + "eres2net_embedding:ERes2NetEmbedding",
                               "speechbrain-ecapa": _B + "ecapa_embedding:EcapaEmbedding"}),
    "tts": Role("deployments.tts:TTSDeployment",
                {"piper": _B + "piper_tts:PiperTTS", "coqui-xtts": _B + "xtts_tts:XttsTTS",
                 "kokoro": _B + "kokoro_tts:KokoroTTS"}),
    "llm": Role("deployments.llm:LLMDeployment",
                {"llama-cpp": _B + "llama_cpp_llm:LlamaCppLLM", "vllm": _B + "vllm_llm:VllmLLM"}),
    "anti_spoof": Role("deployments.anti_spoof:AntiSpoofDeployment",
                       {"onnx-antispoof": _B + "onnx_antispoof:OnnxAntiSpoof"}),
    "voice_profile": Role("deployments.voice_profile:VoiceProfileDeployment",
                          {"voice2gender": _B + "voice_profile:Voice2GenderProfile"}),
}

SINGLE_ROLES = [name for name, role in ROLES.items() if not role.per_model]
"""Roles served by one deployment named as the role (`vad`, `tts`, ...)."""


def import_target(target: str) -> object:
    """The object named by `module:attr`."""
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
