"""The FastAPI ingress deployment: every endpoint of every API family, one app."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from ray import serve

from graphs import metrics, middleware, routers
from graphs.readiness import Readiness
from graphs.routers import gateway_speech, gateway_stream, health, openai_audio, openai_chat, platform_asr, stream_vad
from graphs.routers import jobs_api, property, webui
from graphs.routers import speakers as speaker_routes
from graphs.routers import tts_platform
from graphs.routers import voice as voice_routes
from graphs.routers import voice_chat as voice_chat_routes
from graphs.routers import voice_layer
from graphs.routers import webrtc as webrtc_routes
from graphs.services import Services
from speechcore.settings import get_settings
from speechcore.spec import GraphSpec

app = FastAPI(title="Speech server", version="0.1.0",
              description="ASR, VAD, speakers, TTS and voice chat on Ray Serve.")
middleware.install(app)
app.add_middleware(metrics.RequestMetrics)   # outermost: times everything, refusals included
app.include_router(health.router)
app.include_router(platform_asr.router)
app.include_router(gateway_speech.router)
app.include_router(openai_audio.router)
app.include_router(openai_chat.router)
app.include_router(speaker_routes.router)
app.include_router(voice_routes.router)
app.include_router(stream_vad.router)
app.include_router(gateway_stream.router)
app.include_router(property.router)
app.include_router(jobs_api.router)
app.include_router(tts_platform.router)
app.include_router(webui.router)
webui.mount(app)
app.include_router(voice_chat_routes.router)
app.include_router(voice_layer.router)
app.include_router(webrtc_routes.router)


# Requests and live sessions one ingress replica holds at once. Stalled uploads are cut after
# SPEECH_BODY_TIMEOUT_S and live sessions are capped, so this bound is never what a client flood reaches
# first: beyond it the proxy queues everything, /health included (256 stopped the server in issue 8).
@serve.deployment(max_ongoing_requests=4096, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    async def __init__(self, spec: dict[str, Any], handles: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        settings = get_settings()
        logging.getLogger().setLevel(settings.log_level)
        graph = GraphSpec(**spec)
        app_name = serve.get_replica_context().app_name
        readiness = Readiness(app_name, list(graph.model_deployments()))
        routers.bind(Services(graph, handles, readiness))
        self._watch = asyncio.create_task(readiness.watch(settings.status_refresh_s))
