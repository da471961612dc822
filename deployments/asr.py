"""ASR deployment: one per configured model (e.g. whisper-base, whisper-tiny.en).

Concurrent requests are decoded together: when the model is free, everything
that queued meanwhile becomes one batch (speechcore.batching explains why not
`@serve.batch` here).
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
        self.batcher = self.drain_batcher(self.backend.transcribe_batch, 8)

    async def transcribe(self, request: ASRRequest) -> Transcript:
        return await self.batcher.submit(request)

    def batch_sizes(self) -> list[int]:
        return self.batcher.batch_sizes

    async def detect_language(self, audio) -> tuple[str, float]:
        return await self.run(self.backend.detect_language, audio)
