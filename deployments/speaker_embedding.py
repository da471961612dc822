"""Speaker embedding deployment (Resemblyzer on CPU, ECAPA-TDNN on GPU); batched."""
from __future__ import annotations

import numpy as np
from ray import serve

from deployments.base import ModelDeployment


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0})
class SpeakerEmbeddingDeployment(ModelDeployment):
    role = "speaker_embedding"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.batcher = self.drain_batcher(self.backend.embed_batch, 16)

    async def embed(self, clip: np.ndarray) -> np.ndarray:
        return await self.batcher.submit(clip)
