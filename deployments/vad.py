"""Voice activity deployment (Silero ONNX).

Files: frame probabilities -> speech regions. Streams: each session passes its
opaque stream state with its audio (`stream_probs`), so any replica can serve
the next call; calls from many sessions are batched into one ONNX run per frame.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from deployments.base import ModelDeployment
from speechcore.vad import RegionOptions, speech_regions


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
class VADDeployment(ModelDeployment):
    role = "vad"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.configure_batching(self.stream_probs, 32)
        self.configure_batching(self.frame_probs, 16)

    async def regions(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Speech regions (seconds) of a whole recording."""
        return speech_regions(await self.frame_probs(audio), len(audio) / 16000, RegionOptions())

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def frame_probs(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Frame probabilities; concurrent recordings share one pass."""
        return await self.run(self.backend.frame_probs_batch, audios)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def stream_probs(self, items: list[tuple[np.ndarray, Any]]) -> list[tuple[np.ndarray, float, Any]]:
        """items: (audio, stream state or None) per session -> (probs, frame seconds, next state)."""
        return await self.run(self.backend.stream_probs_batch, items)
