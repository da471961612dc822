"""Voice layer: `WS /v1/voice/ws` and its browser console `GET /test` (seeds/voice-layer-websocket.md).

The wire format is graphs/routers/voice_layer_wire.py, the session graphs/voice_layer.py.
Browsers cannot set headers on a WebSocket: with an API key configured, pass it
as `?api_key=` (graphs/middleware.py). `/test` is a static page (no secrets).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, WebSocket
from fastapi.responses import FileResponse

from graphs.routers import services
from graphs.routers.voice_layer_wire import VoiceLayerSerializer
from graphs.transport import WebSocketRunner
from graphs.voice_layer import VoiceLayerSession

router = APIRouter(tags=["voice layer"])
PAGE = Path(__file__).resolve().parents[1] / "static" / "voice_layer_test.html"


@router.websocket("/v1/voice/ws")
async def voice_ws(ws: WebSocket) -> None:
    svc = services()
    serializer = VoiceLayerSerializer()
    await WebSocketRunner(ws, serializer, lambda send: VoiceLayerSession(svc, send, serializer)).run()


@router.get("/test", include_in_schema=False)
async def test_page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html")
