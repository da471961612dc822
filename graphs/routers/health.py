"""Health, readiness and the deployment status table.

Which to probe: `/healthz` for liveness (the ingress answers), `/readyz` for
readiness (503 until every model deployment can serve; what an orchestrator
or load balancer should gate traffic on), `/health` for people and monitors
(200 while the server serves, `degraded` naming what is not ready).
"""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from graphs.routers import services
from graphs.rtc.peer import PEERS
from graphs.services import Services

router = APIRouter(tags=["health"])


@router.get("/health", summary="Server health: ok, or degraded with the deployments not ready")
async def health(svc: Services = Depends(services)):
    not_ready = svc.readiness.not_ready()
    return {"status": "degraded", "not_ready": not_ready} if not_ready else {"status": "ok"}


@router.get("/readyz", summary="Readiness for orchestrators: 200 when every deployment can serve, else 503")
async def readyz(svc: Services = Depends(services)):
    not_ready = svc.readiness.not_ready()
    if not_ready:
        return JSONResponse({"status": "unavailable", "not_ready": not_ready}, status_code=503)
    return {"status": "ok"}


@router.get("/healthz", summary="Liveness of the ingress (plus overall readiness)")
async def healthz(svc: Services = Depends(services)):
    return {"ok": True, "ready": svc.readiness.all_ready()}


@router.get("/status", summary="Every deployment: role, backend, model, device, readiness")
async def status(svc: Services = Depends(services)):
    rows = []
    for name, (role, spec) in svc.spec.model_deployments().items():
        state = svc.readiness.states[name]
        info = await svc.info(name) or {}
        rows.append({"deployment": name, "role": role, "backend": spec.backend, "model": spec.model,
                     "device": spec.device, "status": state.status, "ready": state.ready,
                     "replicas": state.replicas, "scales_to_zero": state.scales_to_zero,
                     "message": state.message, "path": info.get("path"), "size_bytes": info.get("size_bytes")})
    return {"status": "ok" if svc.readiness.all_ready() else "degraded", "deployments": rows,
            "webrtc": PEERS.stats()}
