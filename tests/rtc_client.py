"""A WebRTC client peer (aiortc) that talks to the server as a browser does: for tests and bench/webrtc.py.

It offers an audio transceiver (its microphone: recorded speech pushed into
a paced track, silence otherwise) and the `chat` DataChannel, sends its ICE
candidates by trickle (`/ice`, then null) instead of in the offer, records
the agent's audio with arrival times and every DataChannel message.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from graphs.rtc.media import RATE, AgentTrack, mic_audio
from graphs.rtc.peer import restrict_host_addresses
from speechcore.audio import SAMPLE_RATE, decode_audio, resample

restrict_host_addresses(["127.0.0.1"])       # loopback only: nothing leaves this machine


def speech_48k(path: Any) -> np.ndarray:
    return resample(decode_audio(str(path)), SAMPLE_RATE, RATE)


class Client:
    def __init__(self, base_url: str):
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60)
        self.pc = RTCPeerConnection()
        self.mic = AgentTrack()
        self.messages: list[dict[str, Any]] = []
        self.audio: list[tuple[float, np.ndarray]] = []      # (arrival, 16 kHz chunk) of the agent's track
        self.pc_id = ""
        self._new = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.channel = self.pc.createDataChannel("chat")
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)
        self.pc.addTrack(self.mic)

    def _on_message(self, message: Any) -> None:
        self.messages.append({**json.loads(message), "at": time.monotonic()})
        self._new.set()

    def _on_track(self, track: Any) -> None:
        async def read() -> None:
            async for chunk in mic_audio(track):
                self.audio.append((time.monotonic(), chunk))
        self._reader = asyncio.ensure_future(read())

    async def connect(self, **fields: Any) -> dict[str, Any]:
        """Offer without candidates, trickle them after the answer, then null; wait for the channel."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        candidates = [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")]
        bare = "".join(f"{line}\r\n" for line in sdp.splitlines()
                       if not line.startswith(("a=candidate:", "a=end-of-candidates")))
        response = await self.http.post("/offer", json={"sdp": bare, "type": "offer", **fields})
        response.raise_for_status()
        answer = response.json()
        self.pc_id = answer["pc_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        for line in candidates:
            r = await self.http.post("/ice", json={"pc_id": self.pc_id, "candidate": {
                "candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}})
            r.raise_for_status()
        (await self.http.post("/ice", json={"pc_id": self.pc_id, "candidate": None})).raise_for_status()
        await self.wait_for(lambda: self.channel.readyState == "open", 30)
        return answer

    def say(self, path: Any, silence_s: float = 0.0) -> None:
        self.mic.push(np.concatenate([speech_48k(path), np.zeros(int(silence_s * RATE), np.float32)]))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def wait_for(self, condition: Any, timeout_s: float) -> None:
        async def loop() -> None:
            while not condition():
                self._new.clear()
                try:
                    await asyncio.wait_for(self._new.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
        await asyncio.wait_for(loop(), timeout_s)

    async def wait_message(self, kind: str, timeout_s: float = 120, count: int = 1) -> dict[str, Any]:
        await self.wait_for(lambda: len(self.of(kind)) >= count, timeout_s)
        return self.of(kind)[count - 1]

    def agent_text(self) -> str:
        return "".join(m["text"] for m in self.of("agent_text"))

    def received(self, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        chunks = [c for at, c in self.audio if since <= at < until]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
        self.mic.stop()
        await self.pc.close()
        await self.http.aclose()


def voiced_seconds(audio: np.ndarray, frame: int = SAMPLE_RATE // 50, level: float = 0.01) -> float:
    """Seconds of 20 ms frames louder than `level` RMS (agent speech as opposed to silence)."""
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    return float((np.sqrt((frames ** 2).mean(axis=1)) > level).sum() * frame / SAMPLE_RATE)


def words(text: str) -> str:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).strip()


async def peers(base_url: str) -> dict:
    async with httpx.AsyncClient(base_url=base_url) as http:
        return (await http.get("/status")).json()["webrtc"]


async def settled(base_url: str) -> None:
    """Earlier tests' peers are gone (the server closes a peer whose client left by its media timeout)."""
    for _ in range(120):
        if (await peers(base_url))["active_peers"] == 0:
            return
        await asyncio.sleep(0.5)
