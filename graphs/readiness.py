"""Which deployments can answer now, and why not, from Serve's own status.

Requests to a deployment that is not running are refused at once with 503
(never queued behind a replica that may never be placed), and a deployment
whose replicas need resources the cluster does not have is named as such. A
deployment that autoscales to zero (`min_replicas: 0`) and has no replica is
ready: a request reaches Serve's router, which starts a replica for it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

log = logging.getLogger("speech.readiness")

SERVING = ("HEALTHY", "UPSCALING", "DOWNSCALING")


@dataclass
class DeploymentState:
    status: str = "UNKNOWN"
    message: str = ""
    replicas: int = 0
    scales_to_zero: bool = False
    placeable: bool = True

    @property
    def ready(self) -> bool:
        """A request sent now is served: by a running replica, or by one Serve starts for it."""
        return self.placeable and self.status in SERVING and (self.replicas > 0 or self.scales_to_zero)

    @property
    def running(self) -> bool:
        """A replica is up (asking one something does not wake a deployment scaled to zero)."""
        return self.ready and self.replicas > 0


class Readiness:
    def __init__(self, app_name: str, deployments: list[str]):
        self.app_name = app_name
        self.states = {d: DeploymentState() for d in deployments}
        self.refreshed_at = 0.0
        self._warned: set[str] = set()

    async def refresh(self) -> None:
        from ray import serve

        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(self.app_name)
        if app is None:
            return
        unplaceable, min_replicas = await asyncio.to_thread(self._configs)
        for name in self.states:
            d = app.deployments.get(name)
            if d is None:
                continue
            running = sum(n for s, n in d.replica_states.items() if str(s).endswith("RUNNING"))
            self.states[name] = DeploymentState(str(d.status).split(".")[-1], unplaceable.get(name) or d.message,
                                                running, min_replicas.get(name) == 0, name not in unplaceable)
            if name in unplaceable and name not in self._warned:
                self._warned.add(name)
                log.error("deployment %s cannot be placed: %s", name, unplaceable[name])
        self.refreshed_at = time.time()

    def _configs(self) -> tuple[dict[str, str], dict[str, int]]:
        """(deployments asking for more of a resource than the whole cluster has -> why,
        autoscaling deployments -> min_replicas)."""
        import ray
        from ray.serve.context import _get_global_client

        total = ray.cluster_resources()
        details = _get_global_client().get_serve_details()
        app = details.get("applications", {}).get(self.app_name, {})
        unplaceable, min_replicas = {}, {}
        for name, dep in app.get("deployments", {}).items():
            config = dep.get("deployment_config", {})
            if config.get("autoscaling_config"):
                min_replicas[name] = int(config["autoscaling_config"].get("min_replicas", 1))
            opts = config.get("ray_actor_options") or {}
            need = {"GPU": opts.get("num_gpus") or 0, "CPU": opts.get("num_cpus") or 0,
                    **(opts.get("resources") or {})}
            missing = {k: v for k, v in need.items() if v and total.get(k, 0) < v}
            if missing:
                unplaceable[name] = (f"cannot be placed: each replica needs {missing} but the cluster has "
                                     f"{ {k: total.get(k, 0) for k in missing} }; run the CPU profile "
                                     f"(configs/serve_cpu.yaml) or add the resources")
        return unplaceable, min_replicas

    async def watch(self, every_s: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the controller may be busy; try again next tick
                log.warning("readiness refresh failed: %s", exc)
            await asyncio.sleep(every_s if not self.all_ready() else every_s * 5)

    def all_ready(self) -> bool:
        return all(s.ready for s in self.states.values())

    def not_ready(self) -> list[str]:
        return [name for name, s in self.states.items() if not s.ready]
