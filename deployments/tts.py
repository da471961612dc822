"""Text-to-speech deployment (Piper + espeak-ng on CPU, XTTS on GPU); streams one chunk per sentence."""
from __future__ import annotations

import asyncio

from ray import serve

from deployments.base import ModelDeployment
from speechcore.schemas import Speech


@serve.deployment(max_ongoing_requests=16, ray_actor_options={"num_cpus": 0})
class TTSDeployment(ModelDeployment):
    role = "tts"

    def voices(self) -> list[dict]:
        return self.backend.voices()

    async def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0,
                         language: str | None = None):
        """Async generator of Speech chunks; call with handle.options(stream=True)."""
        chunks = self.backend.synthesize(text, voice, speed, language)
        while True:
            chunk: Speech | None = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk
