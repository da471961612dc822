"""WebRTC voice agent signalling (speech platform family): `POST /offer`, `POST /ice`, `GET /webrtc/peers`,
and `GET /webrtc`, a browser page that talks to the agent.

The media then flows peer to peer between the browser and this ingress
replica (graphs/rtc); see the README's "WebRTC voice agent" section.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from graphs import speech
from graphs.routers import services
from graphs.rtc.peer import PEERS
from graphs.services import Services
from speechcore.errors import ApiError

router = APIRouter(tags=["webrtc"])

MAX_SDP_CHARS = 64 * 1024
CLONING_ENGINES = {"xtts"}


class Offer(BaseModel):
    sdp: str = Field(..., min_length=1, max_length=MAX_SDP_CHARS, description="pc.localDescription.sdp")
    type: Literal["offer"] = "offer"
    speaker_id: str | None = Field(None, max_length=64, description="TTS speaker UUID (GET /api/speakers).")
    user_system_prompt: str | None = Field(None, max_length=8000, description="System prompt for the agent.")
    reference_audio: str | None = Field(None, max_length=255, description="A cloning speaker's reference audio "
                                        "file name (from /api/speakers); needs a TTS that clones (XTTS).")
    reference_text: str | None = Field(None, max_length=2000, description="Transcript of reference_audio.")
    language: str | None = Field(None, max_length=8, description="The conversation's language (default: the "
                                 "server's voice-chat language; auto: detected).")


class Candidate(BaseModel):
    candidate: str = Field("", max_length=2048)
    sdpMid: str | None = Field(None, max_length=64)
    sdpMLineIndex: int | None = Field(None, ge=0, le=64)


class Ice(BaseModel):
    pc_id: str = Field(..., min_length=1, max_length=64)
    candidate: Candidate | None


async def _cloned_speaker(svc: Services, offer: Offer) -> str | None:
    """The speaker whose reference audio the offer names; 400 where the TTS cannot clone, 404 unknown."""
    if not offer.reference_audio:
        return offer.speaker_id
    cloning = [v for v in (await speech.catalog(svc)).voices if v.engine in CLONING_ENGINES]
    if not cloning:
        raise ApiError(400, "voice_cloning_unavailable", "This server's TTS cannot clone a voice from reference "
                       "audio (the GPU profile's XTTS can); pick a speaker_id from GET /api/speakers instead.",
                       param="reference_audio")
    for voice in cloning:
        if voice.reference_audio == offer.reference_audio and offer.speaker_id in (None, voice.id):
            return voice.id
    raise ApiError(404, "reference_audio_not_found", "No cloning speaker has that reference_audio; "
                   "GET /api/speakers lists them.", param="reference_audio")


@router.post("/offer", summary="WebRTC: the browser's SDP offer -> the server's answer and pc_id")
async def offer(body: Offer, svc: Services = Depends(services)):
    fields = {"speaker_id": await _cloned_speaker(svc, body), "system_prompt": body.user_system_prompt,
              "language": body.language, "sample_rate": 48000, "frame_ms": 20}
    peer = await PEERS.open(svc, body.sdp, fields)
    return {"pc_id": peer.pc_id, "sdp": peer.sdp, "type": "answer"}


@router.post("/ice", summary="WebRTC: one trickled ICE candidate of the browser (null: end of candidates)")
async def ice(body: Ice):
    peer = PEERS.get(body.pc_id)
    await peer.add_candidate(body.candidate.model_dump() if body.candidate else None)
    return {"status": "ok"}


@router.get("/webrtc/peers", summary="WebRTC peers this ingress replica holds (also in GET /status)")
async def peers():
    return PEERS.stats()


PAGE = Path(__file__).resolve().parents[1] / "rtc" / "page.html"


@router.get("/webrtc", response_class=HTMLResponse, summary="A browser page that holds a voice conversation "
            "over WebRTC (query: language, speaker_id, prompt, autostart)")
async def page():
    return HTMLResponse(PAGE.read_text())
