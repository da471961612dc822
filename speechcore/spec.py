"""The application graph spec: the `args:` of a Serve config (CPU or GPU profile).

Both profiles are this one schema; `serve_config.yaml` (GPU) and
`configs/serve_cpu.yaml` (CPU) differ only in values.
"""
from __future__ import annotations

from pydantic import BaseModel, Field


class BackendSpec(BaseModel):
    backend: str
    model: str
    """A registry name (configs/models.yaml), a local path, or a hub id."""
    device: str = "cpu"
    options: dict = Field(default_factory=dict)


class ASRSpec(BackendSpec):
    deployment: str
    """Serve deployment name for this model (resources are configured under it)."""


class GraphSpec(BaseModel):
    asr: dict[str, ASRSpec]
    """Public model name -> ASR deployment; requests choose with `model`."""
    default_asr: str
    vad: BackendSpec
    speaker_embedding: BackendSpec
    tts: BackendSpec
    llm: BackendSpec
    anti_spoof: BackendSpec
    voice_profile: BackendSpec

    def model_deployments(self) -> dict[str, tuple[str, BackendSpec]]:
        """Deployment name -> (role, spec) for every model deployment in the graph."""
        out: dict[str, tuple[str, BackendSpec]] = {a.deployment: ("asr", a) for a in self.asr.values()}
        out.update({"vad": ("vad", self.vad), "speaker_embedding": ("speaker_embedding", self.speaker_embedding),
                    "tts": ("tts", self.tts), "llm": ("llm", self.llm)})
        out.update({"anti_spoof": ("anti_spoof", self.anti_spoof),
                    "voice_profile": ("voice_profile", self.voice_profile)})
        return out
