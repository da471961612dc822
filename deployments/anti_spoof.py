"""Anti-spoofing deployment: ONNX detector (in-repo model on CPU, AASIST-class model by config)."""
from __future__ import annotations

import numpy as np
from ray import serve

from deployments.base import ModelDeployment


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0})
class AntiSpoofDeployment(ModelDeployment):
    role = "anti_spoof"

    async def detect(self, audio: np.ndarray, mode: str = "bank_flex") -> dict:
        return await self.run(self.backend.detect, audio, mode)
