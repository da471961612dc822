"""Handles to the model deployments, guarded by readiness. What routers and graphs call."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from graphs.readiness import Readiness
from speechcore.errors import ApiError, Unavailable
from speechcore.settings import get_settings
from speechcore.spec import GraphSpec


class Services:
    def __init__(self, spec: GraphSpec, handles: dict[str, Any], readiness: Readiness):
        self.spec = spec
        self.handles = handles          # deployment name -> DeploymentHandle
        self.readiness = readiness
        self.roles = {name: role for name, (role, _) in spec.model_deployments().items()}
        self._info: dict[str, dict] = {}

    def asr_deployment(self, model: str | None) -> str:
        """Deployment serving the public ASR model name; 404 for a name not configured."""
        name = model or self.spec.default_asr
        if name not in self.spec.asr:
            raise ApiError(404, "model_not_found",
                           f"Model {name!r} not found; available: {sorted(self.spec.asr)}", param="model")
        return self.spec.asr[name].deployment

    def _ready_handle(self, deployment: str):
        state = self.readiness.states.get(deployment)
        if state is None or not state.ready:
            why = f": {state.message}" if state and state.message else ""
            raise Unavailable(f"The {self.roles.get(deployment, deployment)} deployment '{deployment}' "
                              f"is not ready ({state.status if state else 'unknown'}){why}")
        return self.handles[deployment]

    async def call(self, deployment: str, method: str, *args, **kwargs) -> Any:
        handle = self._ready_handle(deployment)
        response = getattr(handle, method).remote(*args, **kwargs)
        try:
            return await asyncio.wait_for(response, get_settings().request_timeout_s)
        except asyncio.CancelledError:
            response.cancel()           # the caller gave up (e.g. a live session dropped a stale decode)
            raise
        except asyncio.TimeoutError as exc:
            response.cancel()
            raise Unavailable(f"'{deployment}' did not answer within {get_settings().request_timeout_s:.0f} s",
                              code="timeout") from exc

    async def stream(self, deployment: str, method: str, *args, **kwargs) -> AsyncIterator[Any]:
        handle = self._ready_handle(deployment).options(stream=True)
        async for item in getattr(handle, method).remote(*args, **kwargs):
            yield item

    async def info(self, deployment: str) -> dict | None:
        """The backend's ModelInfo as a dict, cached once the deployment answers."""
        if deployment not in self._info and self.readiness.states[deployment].ready:
            try:
                self._info[deployment] = await asyncio.wait_for(self.handles[deployment].info.remote(), 10)
            except Exception:
                return None
        return self._info.get(deployment)
