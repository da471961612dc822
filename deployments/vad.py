"""Voice activity deployment (Silero ONNX).

Files: frame probabilities -> speech regions. Streams: each session passes its
opaque stream state with its audio (`stream_probs`), so any replica can serve
the next call; calls from many sessions are batched into one ONNX run per frame.
Batch sizes come from the deployment's `user_config` (a `VADBatchConfig`,
applied by `reconfigure`); a batch that fails is run again item by item, so only
the item that fails gets the error.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from deployments.base import ModelDeployment
from speechcore.backends.protocols import SpeechDetector
from speechcore.batching import Failed, isolate_failures, unwrap
from speechcore.vad import RegionOptions, speech_regions

StreamItem = tuple[np.ndarray, Any]               # (audio, stream state or None)
StreamResult = tuple[np.ndarray, float, Any]      # (probs, frame seconds, next state)


class VADBatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regions_max_batch_size: int = Field(16, ge=1)
    """Whole recordings per frame-probability pass."""
    regions_batch_wait_s: float = Field(0.005, ge=0)
    step_max_batch_size: int = Field(32, ge=1)
    """Live sessions' stream steps per ONNX run."""
    step_batch_wait_s: float = Field(0.002, ge=0)


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
class VADDeployment(ModelDeployment):
    role = "vad"
    Config = VADBatchConfig
    backend: SpeechDetector

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        self.reconfigure({})

    def reconfigure(self, config: dict[str, Any]) -> None:
        c = VADBatchConfig.model_validate(config)
        self._frame_probs_batch.set_max_batch_size(c.regions_max_batch_size)
        self._frame_probs_batch.set_batch_wait_timeout_s(c.regions_batch_wait_s)
        self._stream_batch.set_max_batch_size(c.step_max_batch_size)
        self._stream_batch.set_batch_wait_timeout_s(c.step_batch_wait_s)

    async def regions(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Speech regions (seconds) of a whole recording."""
        return speech_regions(await self.frame_probs(audio), len(audio) / 16000, RegionOptions())

    async def frame_probs(self, audio: np.ndarray) -> np.ndarray:
        """Frame probabilities; concurrent recordings share one pass."""
        return unwrap(await self._frame_probs_batch(audio))

    async def stream_probs(self, item: StreamItem) -> StreamResult:
        """One session's audio and stream state -> (probs, frame seconds, next state)."""
        return unwrap(await self._stream_batch(item))

    @serve.batch
    async def _frame_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray | Failed]:
        return await isolate_failures(lambda batch: self.run(self.backend.frame_probs_batch, batch), audios)

    @serve.batch
    async def _stream_batch(self, items: list[StreamItem]) -> list[StreamResult | Failed]:
        return await isolate_failures(lambda batch: self.run(self.backend.stream_probs_batch, batch), items)
