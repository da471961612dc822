"""Every backend in the role table implements its role's Protocol (checked by mypy, never run)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from speechcore.backends.ecapa_embedding import EcapaEmbedding
    from speechcore.backends.kokoro_tts import KokoroTTS
    from speechcore.backends.llama_cpp_llm import LlamaCppLLM
    from speechcore.backends.nemo_asr import NemoASR
    from speechcore.backends.onnx_antispoof import OnnxAntiSpoof
    from speechcore.backends.piper_tts import PiperTTS
    from speechcore.backends.protocols import (Embedder, Generator, SpeechDetector, SpoofDetector, Synthesizer,
                                               Transcriber, VoiceProfiler)
    from speechcore.backends.resemblyzer_embedding import ResemblyzerEmbedding
    from speechcore.backends.silero_vad import SileroVAD
    from speechcore.backends.vllm_llm import VllmLLM
    from speechcore.backends.voice_profile import Voice2GenderProfile
    from speechcore.backends.whisper_asr import FasterWhisperASR
    from speechcore.backends.xtts_tts import XttsTTS

    transcribers: list[type[Transcriber]] = [FasterWhisperASR, NemoASR]
    detectors: list[type[SpeechDetector]] = [SileroVAD]
    embedders: list[type[Embedder]] = [ResemblyzerEmbedding, EcapaEmbedding]
    synthesizers: list[type[Synthesizer]] = [PiperTTS, XttsTTS, KokoroTTS]
    generators: list[type[Generator]] = [LlamaCppLLM, VllmLLM]
    spoof_detectors: list[type[SpoofDetector]] = [OnnxAntiSpoof]
    profilers: list[type[VoiceProfiler]] = [Voice2GenderProfile]
