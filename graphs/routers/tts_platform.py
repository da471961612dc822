"""Speech platform TTS: `WS /ws/tts`, `GET /api/speakers`, `/api/collections` (seeds/voice-platform-...md).

`/ws/tts`: client text messages `{"target_text", "speaker_id"?, "collection_id"?, "language"?, "speed"?}`
(and optionally `{"type": "end"}` to finish and close); server: binary frames of PCM int16 24 kHz mono,
then `{"type": "end"}` per request, or `{"type": "error", "code", "message"}` (the connection stays open).
Errors on the HTTP paths: `{"detail": message}` with 4xx.
"""
from __future__ import annotations

import asyncio
from typing import Any, Mapping

from fastapi import APIRouter, Depends, Query, WebSocket
from pydantic import BaseModel, Field

from graphs import speech
from graphs.routers import services
from graphs.services import Services
from graphs.transport import WebSocketRunner, json_message
from graphs.tts_session import SpeakRequest, SpeechEnd, TTSSession
from speechcore.audio import float_to_pcm16
from speechcore.sessions.events import AudioOut, EndOfInput, Error, Event
from speechcore.voices.catalog import Catalog
from speechcore.voices.collections import SpeakerCollection, check_langs, check_text, check_uuid

router = APIRouter(tags=["speech platform TTS"])


class TTSSerializer:
    family = "tts"

    def parse(self, message: Mapping[str, Any]) -> list[Event]:
        data = json_message(message)
        return [EndOfInput()] if data.get("type") == "end" else [SpeakRequest(data)]

    def render(self, event: Event) -> dict | bytes | None:
        if isinstance(event, AudioOut):
            return float_to_pcm16(event.audio)
        if isinstance(event, SpeechEnd):
            return {"type": "end"}
        if isinstance(event, Error):
            return {"type": "error", "code": event.code, "message": event.message}
        return None


@router.websocket("/ws/tts")
async def ws_tts(ws: WebSocket):
    svc = services()
    await WebSocketRunner(ws, TTSSerializer(), lambda send: TTSSession(svc, send)).run()


@router.get("/api/speakers", summary="Every voice the server speaks with, each under a stable UUID")
async def list_speakers(user_id: str = Query("default", max_length=200), svc: Services = Depends(services)):
    """Voices are shared (`user_id: "default"`): every user sees them."""
    return {"speakers": [v.speaker() for v in (await speech.catalog(svc)).voices]}


class CollectionIn(BaseModel):
    name: str = Field(..., max_length=200)
    user_id: str = Field(..., max_length=200)
    description: str = Field("", max_length=2000)
    langs: dict[str, str] = Field(default_factory=dict, description="language code -> speaker UUID")


class CollectionUpdate(BaseModel):
    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=2000)
    langs: dict[str, str] | None = Field(None, description="the new full map (replaces the old one)")


def _render(item: SpeakerCollection, voices: Catalog) -> dict:
    langs = {lang: {"id": sid, "name": v.name if (v := voices.by_id.get(sid)) else None}
             for lang, sid in item.langs.items()}
    return {"id": item.id, "name": item.name, "description": item.description, "user_id": item.user_id,
            "langs": langs}


@router.get("/api/collections", summary="Speaker collections of a user")
async def list_collections(user_id: str = Query("default", max_length=200), svc: Services = Depends(services)):
    items, voices = await asyncio.to_thread(speech.collections().list, user_id), await speech.catalog(svc)
    return {"collections": [_render(c, voices) for c in items]}


@router.get("/api/collections/{collection_id}", summary="One speaker collection")
async def get_collection(collection_id: str, svc: Services = Depends(services)):
    item = await asyncio.to_thread(speech.collections().get, check_uuid(collection_id, "collection_id"))
    return _render(item, await speech.catalog(svc))


@router.post("/api/collections", summary="Create a speaker collection (langs: language code -> speaker UUID)")
async def create_collection(body: CollectionIn, svc: Services = Depends(services)):
    langs = check_langs(body.langs, (await speech.catalog(svc)).by_id)
    item = await asyncio.to_thread(speech.collections().create, check_text(body.name, "name", True),
                                   check_text(body.user_id, "user_id", True), body.description, langs)
    return {"id": item.id, "name": item.name, "user_id": item.user_id}


@router.put("/api/collections/{collection_id}", summary="Update a collection (langs replaces the whole map)")
async def update_collection(collection_id: str, body: CollectionUpdate, svc: Services = Depends(services)):
    cid = check_uuid(collection_id, "collection_id")
    voices = await speech.catalog(svc)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = check_text(body.name, "name", True)
    if body.description is not None:
        changes["description"] = body.description
    if body.langs is not None:
        changes["langs"] = check_langs(body.langs, voices.by_id)
    return _render(await asyncio.to_thread(speech.collections().update, cid, changes), voices)


@router.delete("/api/collections/{collection_id}", summary="Delete a collection")
async def delete_collection(collection_id: str):
    await asyncio.to_thread(speech.collections().delete, check_uuid(collection_id, "collection_id"))
    return {"status": "deleted"}
