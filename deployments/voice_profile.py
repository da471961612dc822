"""Voice profile (SSAP) deployment: gender/age/emotion distributions backed by real models only."""
from __future__ import annotations

import numpy as np
from ray import serve

from deployments.base import ModelDeployment


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0})
class VoiceProfileDeployment(ModelDeployment):
    role = "voice_profile"

    async def profile(self, audio: np.ndarray) -> dict[str, dict[str, float]]:
        """Property -> {label: probability}, only for properties a loaded model backs."""
        return await self.run(self.backend.profile, audio)

    def unavailable(self) -> dict[str, str]:
        """Property -> why it is not reported."""
        return self.backend.unavailable()
