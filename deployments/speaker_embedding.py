"""Speaker embedding deployment (Resemblyzer on CPU, ECAPA-TDNN on GPU); batched by audio seconds.

Batching comes from the deployment's `user_config` (a `BatchConfig`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from deployments.base import ModelDeployment
from graphs.metrics import batch_observer, replica_deployment
from speechcore.audio import SAMPLE_RATE
from speechcore.backends.protocols import Embedder
from speechcore.batching import BatchConfig, DrainBatcher, Stopped


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0})
class SpeakerEmbeddingDeployment(ModelDeployment):
    role = "speaker_embedding"
    Config = BatchConfig
    backend: Embedder

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        self.batcher: DrainBatcher[np.ndarray, np.ndarray] = DrainBatcher(self._embed, on_batch=batch_observer(replica_deployment()))

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.batcher.configure(BatchConfig.model_validate(config))

    async def _embed(self, clips: list[np.ndarray], stopped: Stopped) -> list[np.ndarray]:
        return await self.run(self.backend.embed_batch, clips)

    async def embed(self, clip: np.ndarray) -> np.ndarray:
        return await self.batcher.submit(clip, len(clip) / SAMPLE_RATE)
