"""Voice activity deployment (Silero ONNX).

Files: frame probabilities -> speech regions. Streams: sessions keep their
own recurrent state; `step` calls from many sessions are batched into one
ONNX run per frame.
"""
from __future__ import annotations

import numpy as np
from ray import serve

from deployments.base import ModelDeployment
from speechcore.vad import RegionOptions, speech_regions


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
class VADDeployment(ModelDeployment):
    role = "vad"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.configure_batching(self.step, 32)
        self.configure_batching(self.frame_probs, 16)

    async def regions(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Speech regions (seconds) of a whole recording."""
        return speech_regions(await self.frame_probs(audio), len(audio) / 16000, RegionOptions())

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def frame_probs(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Frame probabilities; concurrent recordings share one pass."""
        return await self.run(self.backend.frame_probs_batch, audios)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def step(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """items: (frames (T, 576) with context, state (2, 1, 128)) per session -> (probs (T,), state)."""
        return await self.run(_step_lanes, self.backend, items)


def _step_lanes(backend, items):
    lanes = len(items)
    longest = max(f.shape[0] for f, _ in items)
    state = np.concatenate([s for _, s in items], axis=1)
    probs = np.zeros((lanes, longest), dtype=np.float32)
    final = [None] * lanes
    for t in range(longest):
        frames = np.stack([f[t] if t < f.shape[0] else np.zeros(f.shape[1], np.float32) for f, _ in items])
        probs[:, t], state = backend.run(frames, state)
        for i, (f, _) in enumerate(items):
            if t == f.shape[0] - 1:
                final[i] = state[:, i:i + 1].copy()
    return [(probs[i, : f.shape[0]], final[i] if final[i] is not None else s) for i, (f, s) in enumerate(items)]
