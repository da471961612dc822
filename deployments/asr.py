"""ASR deployment: one per configured model (e.g. whisper-base, whisper-tiny.en).

Concurrent requests are collected by `@serve.batch` and decoded together.
"""
from __future__ import annotations

from ray import serve

from deployments.base import ModelDeployment
from speechcore.schemas import ASRRequest, Transcript


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0})
class ASRDeployment(ModelDeployment):
    role = "asr"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.configure_batching(self.transcribe, 8)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def transcribe(self, requests: list[ASRRequest]) -> list[Transcript]:
        return await self.run(self.backend.transcribe_batch, requests)

    async def detect_language(self, audio) -> tuple[str, float]:
        return await self.run(self.backend.detect_language, audio)
