"""ASR deployment: one per configured model (e.g. whisper-base, whisper-tiny.en).

Concurrent requests are decoded together: when the model is free, everything
that queued meanwhile becomes one batch, interactive work first, filled up to
an audio-seconds budget (speechcore.batching explains why not `@serve.batch`).
Bulk requests are admitted per lane (429 beyond the bound) and decoded in
pieces of one budget, so live work waits for one piece at most. Batching and
admission come from the deployment's `user_config` (a `BatchConfig`).
"""
from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from ray import serve

from deployments.base import ModelDeployment
from graphs.metrics import batch_observer, replica_deployment
from speechcore.backends.protocols import Transcriber
from speechcore.batching import (BatchConfig, DrainBatcher, Overloaded, Stopped, audio_seconds, join_transcripts,
                                 split_request)
from speechcore.schemas import ASRRequest, Transcript


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
class ASRDeployment(ModelDeployment):
    role = "asr"
    Config = BatchConfig
    backend: Transcriber

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        self.batcher: DrainBatcher[ASRRequest, Transcript] = DrainBatcher(self._decode, on_batch=batch_observer(replica_deployment()))

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.batcher.configure(BatchConfig.model_validate(config))

    async def _decode(self, requests: list[ASRRequest], stopped: Stopped) -> list[Transcript]:
        return await self.run(self.backend.transcribe_batch, requests, stopped)

    async def transcribe(self, request: ASRRequest) -> Transcript | Overloaded:
        """The transcript, or the refusal when the request's lane is full. The refusal is returned, not
        raised: Serve logs every raised exception as a failed request (an ERROR with a traceback),
        and a full lane is the server working as configured; the ingress facade raises it (429)."""
        cost = audio_seconds(request)
        try:
            with self.batcher.admitted(request.lane, cost):
                return await self._transcribe(request, cost)
        except Overloaded as refused:
            return refused

    async def _transcribe(self, request: ASRRequest, cost: float) -> Transcript:
        if request.lane == "interactive":
            return await self.batcher.submit(request, cost, request.lane)
        first, *rest = split_request(request, self.batcher.config.budget("bulk"))
        head = await self.batcher.submit(first, audio_seconds(first), request.lane)
        if not rest:
            return head
        options = request.options if request.options.language else replace(request.options,
                                                                             language=head.language or None)
        tail = await asyncio.gather(*(self.batcher.submit(replace(p, options=options), audio_seconds(p),
                                                          request.lane) for p in rest))
        return join_transcripts([head, *tail])

    def batch_sizes(self) -> list[int]:
        return self.batcher.batch_sizes

    def batch_config(self) -> dict[str, Any]:
        """The batching and admission settings in force (from `user_config`)."""
        return self.batcher.config.model_dump()

    async def detect_language(self, audio: Any) -> tuple[str, float]:
        return await self.run(self.backend.detect_language, audio)
