"""What every model deployment shares: load its backend from the spec, report what it runs."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any, Callable, TypeVar

from speechcore.backends import load_backend
from speechcore.settings import get_settings
from speechcore.spec import BackendSpec

T = TypeVar("T")


class ModelDeployment:
    role: str = ""

    def __init__(self, spec: dict[str, Any]):
        logging.getLogger().setLevel(get_settings().log_level)
        self.spec = BackendSpec(**spec)
        self.backend: Any = load_backend(self.role, self.spec)

    def info(self) -> dict[str, Any]:
        return asdict(self.backend.info())

    @staticmethod
    async def run(fn: Callable[..., T], *args: Any) -> T:
        """Model work off the replica's event loop, so health checks and batching keep going."""
        return await asyncio.to_thread(fn, *args)
