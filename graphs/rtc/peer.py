"""Server peers: one RTCPeerConnection per browser, running the same voice chat as `/ws/voice-chat`.

A `Peer` owns its connection, the agent's outgoing track, the `chat`
DataChannel and a `VoiceChat` (graphs/voice_chat.py: the conversation engine
wired to the shared deployments). Microphone audio goes into the chat through
an `AudioFeeder` (the track is read at real time whatever the models do);
conversation events go out as DataChannel JSON and track audio.

`Peers` is this ingress replica's registry: the bound on concurrent peers,
lookups by `pc_id`, and the watchdog that closes a peer whose ICE/DTLS does
not connect within `webrtc_connect_timeout_s`, whose connection fails, or
whose microphone sends nothing for `webrtc_media_timeout_s`. Closing a peer
closes its chat (cancelling every model call in flight), its tasks and its
connection.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import aioice.ice
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import candidate_from_sdp

from graphs.routers.voice_chat import VoiceChatSerializer
from graphs.rtc.media import RATE, AgentTrack, mic_audio
from graphs.services import Services
from graphs.voice_chat import VoiceChat
from speechcore.audio import SAMPLE_RATE, resample
from speechcore.errors import ApiError
from speechcore.sessions.events import (AgentEnd, AudioIn, AudioOut, Configure, Event, Final, Interrupted, Partial,
                                        TextIn)
from speechcore.sessions.live import AudioFeeder
from speechcore.settings import Settings, get_settings

log = logging.getLogger("speech.webrtc")

MAX_BACKLOG_S = 10.0          # microphone audio not yet through the engine
WATCH_INTERVAL_S = 1.0
_serializer = VoiceChatSerializer()


def render(event: Event) -> dict[str, Any] | None:
    """The DataChannel message for a conversation event: the document's `transcription` and `agent_text`,
    a `partial` preview, and otherwise the same events as /ws/voice-chat (audio goes on the track)."""
    if isinstance(event, Final):
        return {"type": "transcription", "text": event.transcript.text.strip()}
    if isinstance(event, Partial):
        return {"type": "partial", "text": event.transcript.text.strip()}
    if isinstance(event, AudioOut):
        return None
    message = _serializer.render(event)
    return message if isinstance(message, dict) else None


def ice_servers(settings: Settings) -> list[RTCIceServer]:
    return [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
            for s in settings.webrtc_ice_servers]


def restrict_host_addresses(addresses: list[str]) -> None:
    """Gather host candidates on these addresses only (aioice offers no option, so its lookup is replaced):
    the node's public interface on a multi-homed host, or loopback in tests."""
    if addresses:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


class Peer:
    def __init__(self, pc_id: str, svc: Services, settings: Settings):
        self.pc_id, self.settings = pc_id, settings
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(settings),
                                                     bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.track = AgentTrack()
        self.chat = VoiceChat(svc, self.send)
        self.feeder = AudioFeeder(self._feed, int(MAX_BACKLOG_S * SAMPLE_RATE))
        self.channel: Any = None
        self.sdp = ""                                # the answer
        self.outbox: list[str] = []
        self.created = self.last_audio = time.monotonic()
        self.connected = False
        self.closed = False
        self.close_reason = ""
        self.tasks: set[asyncio.Task[None]] = set()
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)

    # -- signalling ------------------------------------------------------------------------------------
    async def answer(self, sdp: str, fields: dict[str, Any]) -> str:
        """Configure the chat, apply the offer and answer it (every local candidate is in the answer)."""
        await self.chat.handle(Configure(fields))
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, AssertionError, ... on a bad SDP
            log.info("bad offer: %r", exc)
            raise ApiError(400, "invalid_sdp", "The SDP offer could not be parsed or applied.", param="sdp") from exc
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            raise ApiError(400, "invalid_sdp", "The SDP offer has no audio section.", param="sdp")
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        if candidate is None or not candidate.get("candidate"):
            await self.pc.addIceCandidate(None)      # end of candidates ("" is a browser's way to say it)
            return
        line = str(candidate["candidate"])
        try:
            parsed = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
        except Exception as exc:
            raise ApiError(400, "invalid_candidate", "The ICE candidate could not be parsed.",
                           param="candidate") from exc
        parsed.sdpMid, parsed.sdpMLineIndex = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
        try:
            await self.pc.addIceCandidate(parsed)
        except ValueError as exc:
            raise ApiError(400, "invalid_candidate", "The ICE candidate needs `sdpMid` or `sdpMLineIndex`.",
                           param="candidate") from exc

    # -- media and data in -----------------------------------------------------------------------------
    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._spawn(self._read_mic(track))

    async def _read_mic(self, track: Any) -> None:
        async for chunk in mic_audio(track):
            self.last_audio = time.monotonic()
            await self.feeder.put(chunk)

    async def _feed(self, audio: np.ndarray) -> None:
        await self.chat.handle(AudioIn(audio))

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != "chat" or self.channel is not None:
            return
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("open", self._flush_outbox)
        self._flush_outbox()

    def _on_message(self, message: Any) -> None:
        if isinstance(message, str) and message.strip():
            self._spawn(self._text(message))

    async def _text(self, text: str) -> None:
        try:
            await self.chat.handle(TextIn(text))
        except ApiError as err:
            await self.send_message({"type": "error", "source": "session", "code": err.code, "message": err.message})

    # -- events out --------------------------------------------------------------------------------------
    async def send(self, event: Event) -> None:
        """The chat's Send: audio to the track, everything else to the DataChannel."""
        if isinstance(event, AudioOut):
            self.track.push(resample(event.audio, event.sample_rate, RATE))
        elif isinstance(event, Interrupted):
            self.track.clear()
        elif isinstance(event, AgentEnd):
            self.track.flush()
        message = render(event)
        if message is not None:
            await self.send_message(message)

    async def send_message(self, message: dict[str, Any]) -> None:
        self.outbox.append(json.dumps(message, ensure_ascii=False))
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        if self.channel is None or self.channel.readyState != "open":
            return                                   # kept until the channel opens
        for text in self.outbox:
            self.channel.send(text)
        self.outbox.clear()

    # -- lifecycle ---------------------------------------------------------------------------------------
    def expired(self, now: float) -> str | None:
        """Why this peer should be closed now, or None."""
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            return f"connection {state}"
        if state == "connected":
            self.connected = True
            if now - self.last_audio > self.settings.webrtc_media_timeout_s:
                return "no microphone audio"
        elif not self.connected and now - self.created > self.settings.webrtc_connect_timeout_s:
            return "ICE did not connect"
        return None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.feeder.close()
        await self.chat.close()
        self.track.stop()
        await self.pc.close()


class Peers:
    """This ingress replica's peers: the bound, lookups, the watchdog, stats."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.opened = self.refused = 0
        self.closes: dict[str, int] = {}
        self._watch: asyncio.Task[None] | None = None

    async def open(self, svc: Services, sdp: str, fields: dict[str, Any]) -> Peer:
        settings = get_settings()
        if len(self.peers) >= settings.webrtc_max_peers:
            self.refused += 1
            raise ApiError(503, "too_many_peers", f"The server holds its limit of {settings.webrtc_max_peers} "
                           "WebRTC peers; retry later.", retry_after_s=5)
        restrict_host_addresses(settings.webrtc_host_addresses)
        peer = Peer(uuid.uuid4().hex, svc, settings)
        self.peers[peer.pc_id] = peer
        try:
            peer.sdp = await peer.answer(sdp, fields)
        except BaseException:
            await self.close(peer, "offer refused")
            raise
        self.opened += 1
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._watchdog())
        return peer

    def get(self, pc_id: str) -> Peer:
        peer = self.peers.get(pc_id)
        if peer is None:
            raise ApiError(404, "peer_not_found", f"No peer connection {pc_id!r} (closed, timed out or never "
                           "opened on this server).", param="pc_id")
        return peer

    async def close(self, peer: Peer, reason: str) -> None:
        self.peers.pop(peer.pc_id, None)
        if not peer.closed:
            self.closes[reason] = self.closes.get(reason, 0) + 1
        await peer.close(reason)

    async def close_all(self) -> None:
        for peer in list(self.peers.values()):
            await self.close(peer, "server stopping")

    async def _watchdog(self) -> None:
        while self.peers:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = time.monotonic()
            for peer in list(self.peers.values()):
                reason = peer.expired(now)
                if reason:
                    await self.close(peer, reason)

    def stats(self) -> dict[str, Any]:
        return {"active_peers": len(self.peers), "max_peers": get_settings().webrtc_max_peers,
                "opened": self.opened, "refused": self.refused, "closes": dict(self.closes),
                "peers": [{"pc_id": p.pc_id, "state": p.pc.connectionState, "conversation":
                           p.chat.conv.state if p.chat.conv else None,
                           "agent_audio_s": round(p.track.speech_frames * 0.02, 2)} for p in self.peers.values()]}


PEERS = Peers()
