"""What every model deployment shares: load its backend from the spec, report what it runs."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from speechcore.backends import load_backend
from speechcore.batching import DrainBatcher
from speechcore.settings import get_settings
from speechcore.spec import BackendSpec


class ModelDeployment:
    role: str = ""

    def __init__(self, spec: dict):
        logging.getLogger().setLevel(get_settings().log_level)
        self.spec = BackendSpec(**spec)
        self.backend = load_backend(self.role, self.spec)

    def info(self) -> dict:
        return asdict(self.backend.info())

    @staticmethod
    async def run(fn, *args):
        """Model work off the replica's event loop, so health checks and batching keep going."""
        return await asyncio.to_thread(fn, *args)

    def drain_batcher(self, batch_fn, default_size: int) -> DrainBatcher:
        """A batcher for long model calls: `batch_fn(list) -> list` runs off the event loop."""
        opts = self.spec.options
        return DrainBatcher(lambda items: self.run(batch_fn, items), int(opts.get("max_batch_size", default_size)),
                            float(opts.get("batch_wait_timeout_s", 0.01)))

    def configure_batching(self, method, default_size: int) -> None:
        """Sizes a `@serve.batch` method (kept for short steps such as VAD frames) from the spec."""
        opts = self.spec.options
        method.set_max_batch_size(int(opts.get("max_batch_size", default_size)))
        method.set_batch_wait_timeout_s(float(opts.get("batch_wait_timeout_s", 0.01)))
