"""Health, readiness and the deployment status table."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from graphs.routers import services
from graphs.services import Services

router = APIRouter(tags=["health"])


@router.get("/health", summary="Ready when every model deployment is running")
async def health(svc: Services = Depends(services)):
    not_ready = [n for n, s in svc.readiness.states.items() if not s.ready]
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
                     "replicas": state.replicas, "message": state.message,
                     "path": info.get("path"), "size_bytes": info.get("size_bytes")})
    return {"status": "ok" if svc.readiness.all_ready() else "degraded", "deployments": rows}
