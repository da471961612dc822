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
        self.configure_batching(self.embed, 16)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def embed(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return await self.run(self.backend.embed_batch, clips)
