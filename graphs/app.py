"""Application builder: `import_path: graphs.app:build_app`, `args:` = a GraphSpec.

The CPU and GPU profiles are this one graph with different args and
deployment options (configs/serve_cpu.yaml, serve_config.yaml).
"""
from __future__ import annotations

from ray.serve import Application

from deployments.anti_spoof import AntiSpoofDeployment
from deployments.asr import ASRDeployment
from deployments.llm import LLMDeployment
from deployments.speaker_embedding import SpeakerEmbeddingDeployment
from deployments.tts import TTSDeployment
from deployments.vad import VADDeployment
from deployments.voice_profile import VoiceProfileDeployment
from graphs.ingress import Ingress
from speechcore.spec import GraphSpec

DEPLOYMENT_CLASSES = {"asr": ASRDeployment, "vad": VADDeployment, "speaker_embedding": SpeakerEmbeddingDeployment,
                      "tts": TTSDeployment, "llm": LLMDeployment}
DEPLOYMENT_CLASSES.update({"anti_spoof": AntiSpoofDeployment, "voice_profile": VoiceProfileDeployment})


def build_app(args: dict) -> Application:
    spec = GraphSpec(**args)
    handles = {name: DEPLOYMENT_CLASSES[role].options(name=name).bind(s.model_dump())
               for name, (role, s) in spec.model_deployments().items()}
    return Ingress.options(name="ingress").bind(spec.model_dump(), handles)
