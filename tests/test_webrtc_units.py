"""WebRTC transport pieces without Ray: the paced agent track, frame conversion, DataChannel rendering,
and a real aiortc client and server peer on loopback with a scripted voice chat in place of the models."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from graphs.rtc import peer as rtc_peer
from graphs.rtc.media import FRAME_SAMPLES, RATE, AgentTrack, frame_to_mono
from speechcore.errors import ApiError
from speechcore.schemas import Transcript
from speechcore.sessions.events import (AgentEnd, AgentText, AudioIn, AudioOut, Configure, Final, Interrupted,
                                        Partial, TextIn)
from speechcore.settings import get_settings
from tests.rtc_client import voiced_seconds

rtc_peer.restrict_host_addresses(["127.0.0.1"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_agent_track_paces_queues_and_clears():
    async def scenario():
        track = AgentTrack()
        track.push(np.full(int(RATE * 0.05), 0.5, np.float32))       # 2.5 frames
        assert track.queued_s == pytest.approx(0.05)
        start = time.monotonic()
        frames = [await track.recv() for _ in range(3)]
        elapsed = time.monotonic() - start
        track.push(np.full(FRAME_SAMPLES * 4, 0.5, np.float32))
        track.clear()                                                # barge-in: nothing queued is played
        after = await track.recv()
        track.push(np.full(FRAME_SAMPLES // 2, 0.5, np.float32))
        track.flush()                                                # the reply's tail is padded, not lost
        tail = await track.recv()
        return frames, elapsed, after, tail

    frames, elapsed, after, tail = run(scenario())
    loud = [np.abs(f.to_ndarray()).max() for f in frames]
    assert loud[0] > 16000 and loud[1] > 16000 and loud[2] == 0      # the half frame waits for more audio
    assert [f.pts for f in frames] == [0, FRAME_SAMPLES, 2 * FRAME_SAMPLES]
    assert elapsed >= 0.035                                          # paced, not a burst (2 frame gaps of 20 ms)
    assert not after.to_ndarray().any()
    assert np.abs(tail.to_ndarray()[0, : FRAME_SAMPLES // 2]).min() > 16000 and not tail.to_ndarray()[0, -10:].any()


def test_frame_to_mono_downmixes_packed_and_planar():
    stereo = np.array([[1000, -1000, 2000, 0]], dtype=np.int16)     # packed L R L R
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    assert frame_to_mono(frame) == pytest.approx(np.array([0.0, 1000 / 32768]))
    planar = av.AudioFrame.from_ndarray(np.array([[0.5, 0.5], [0.0, -0.5]], np.float32), format="fltp",
                                        layout="stereo")
    assert frame_to_mono(planar) == pytest.approx(np.array([0.25, 0.0]))


def test_render_speaks_the_documents_events():
    transcript = Transcript(text=" Hello there. ", language="en", language_probability=1.0, segments=[], duration=1.0)
    assert rtc_peer.render(Final(1, transcript, 0.0, 1.0)) == {"type": "transcription", "text": "Hello there."}
    assert rtc_peer.render(Partial(1, transcript, 0.0, 1.0)) == {"type": "partial", "text": "Hello there."}
    assert rtc_peer.render(AgentText("Hi")) == {"type": "agent_text", "text": "Hi"}
    assert rtc_peer.render(Interrupted("Hi")) == {"type": "interrupted", "heard": "Hi"}
    assert rtc_peer.render(AudioOut(np.zeros(10, np.float32), 48000)) is None


class ScriptedChat:
    """Stands in for graphs.voice_chat.VoiceChat: answers text with text and a tone, counts audio in."""

    def __init__(self, svc: Any, send: Any):
        self.send, self.audio_in, self.fields, self.conv, self.closed = send, 0, None, None, False

    async def handle(self, event: Any) -> None:
        if isinstance(event, Configure):
            self.fields = event.fields
        elif isinstance(event, AudioIn):
            self.audio_in += len(event.audio)
        elif isinstance(event, TextIn):
            await self.send(AgentText(f"You said {event.text}"))
            tone = 0.5 * np.sin(np.arange(int(0.6 * 24000)) * 2 * np.pi * 440 / 24000).astype(np.float32)
            await self.send(AudioOut(tone, 24000))
            await self.send(AgentEnd("done"))

    async def close(self) -> None:
        self.closed = True


def test_loopback_peer_trickle_datachannel_audio_and_close(monkeypatch):
    monkeypatch.setattr(rtc_peer, "VoiceChat", ScriptedChat)

    async def scenario():
        peers = rtc_peer.Peers()
        client = RTCPeerConnection()
        mic = AgentTrack()
        client.addTrack(mic)
        channel = client.createDataChannel("chat")
        got: list[str] = []
        heard: list[np.ndarray] = []
        channel.on("message", got.append)

        @client.on("track")
        def on_track(track):
            async def read():
                from graphs.rtc.media import mic_audio
                async for chunk in mic_audio(track):
                    heard.append(chunk)
            asyncio.ensure_future(read())

        await client.setLocalDescription(await client.createOffer())
        sdp = client.localDescription.sdp
        lines = sdp.splitlines()
        bare = "".join(f"{line}\r\n" for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates")))
        peer = await peers.open(None, bare, {"speaker_id": None})
        assert "a=group:BUNDLE" in peer.sdp and "a=rtcp-mux" in peer.sdp
        await client.setRemoteDescription(RTCSessionDescription(peer.sdp, "answer"))
        for line in lines:
            if line.startswith("a=candidate:"):
                await peers.get(peer.pc_id).add_candidate({"candidate": line[2:], "sdpMid": "0",
                                                           "sdpMLineIndex": 0})
        await peer.add_candidate(None)
        with pytest.raises(ApiError) as bad:
            await peer.add_candidate({"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0})
        assert bad.value.status == 400
        for _ in range(100):
            if channel.readyState == "open":
                break
            await asyncio.sleep(0.1)
        mic.push(np.full(RATE // 2, 0.1, np.float32))
        channel.send("hello")
        for _ in range(100):
            if peer.chat.audio_in >= 8000 and voiced_seconds(np.concatenate(heard or [np.zeros(1)])) >= 0.5:
                break
            await asyncio.sleep(0.1)
        stats = peers.stats()
        await peers.close(peer, "test")
        with pytest.raises(ApiError) as gone:
            peers.get(peer.pc_id)
        await client.close()
        return got, heard, peer, stats, gone.value

    got, heard, peer, stats, gone = run(scenario())
    assert '{"type": "agent_text", "text": "You said hello"}' in got
    assert peer.chat.audio_in >= 8000                              # the microphone reached the chat at 16 kHz
    assert voiced_seconds(np.concatenate(heard)) >= 0.5            # the agent's tone reached the client's track
    assert stats["active_peers"] == 1 and stats["peers"][0]["state"] == "connected"
    assert peer.chat.closed and peer.pc.connectionState == "closed" and not peer.tasks
    assert gone.status == 404


def test_peer_limit_refuses_with_503(monkeypatch):
    monkeypatch.setattr(rtc_peer, "VoiceChat", ScriptedChat)
    monkeypatch.setattr(get_settings(), "webrtc_max_peers", 0)
    with pytest.raises(ApiError) as refused:
        run(rtc_peer.Peers().open(None, "v=0", {}))
    assert refused.value.status == 503 and refused.value.code == "too_many_peers"


def test_bad_sdp_is_400_and_frees_the_slot(monkeypatch):
    monkeypatch.setattr(rtc_peer, "VoiceChat", ScriptedChat)
    peers = rtc_peer.Peers()
    for sdp in ("not sdp at all", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"):
        with pytest.raises(ApiError) as bad:
            run(peers.open(None, sdp, {}))
        assert bad.value.status == 400 and bad.value.code == "invalid_sdp"
    assert not peers.peers and peers.closes == {"offer refused": 2}


def test_watchdog_closes_unconnected_and_silent_peers(monkeypatch):
    """No ICE within the connect timeout, or a connected peer whose microphone stops: closed, slot freed."""
    monkeypatch.setattr(rtc_peer, "VoiceChat", ScriptedChat)
    monkeypatch.setattr(rtc_peer, "WATCH_INTERVAL_S", 0.2)
    monkeypatch.setattr(get_settings(), "webrtc_connect_timeout_s", 1.0)
    monkeypatch.setattr(get_settings(), "webrtc_media_timeout_s", 1.0)

    async def offer(client: RTCPeerConnection) -> str:
        client.addTrack(AgentTrack())
        client.createDataChannel("chat")
        await client.setLocalDescription(await client.createOffer())
        return client.localDescription.sdp

    async def scenario():
        peers = rtc_peer.Peers()
        lonely, silent = RTCPeerConnection(), RTCPeerConnection()
        sdp = await offer(lonely)
        bare = "".join(f"{line}\r\n" for line in sdp.splitlines()
                       if not line.startswith(("a=candidate:", "a=end-of-candidates")))
        await peers.open(None, bare, {})                             # never gets a candidate
        peer = await peers.open(None, await offer(silent), {})       # candidates in the offer: connects
        await silent.setRemoteDescription(RTCSessionDescription(peer.sdp, "answer"))
        for _ in range(50):
            if peer.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        silent.getSenders()[0].track.stop()                          # the microphone goes away
        for _ in range(50):
            if not peers.peers:
                break
            await asyncio.sleep(0.2)
        closes = dict(peers.closes)
        await lonely.close()
        await silent.close()
        return closes, peer

    closes, peer = run(scenario())
    assert closes == {"ICE did not connect": 1, "no microphone audio": 1}
    assert peer.chat.closed and not peer.tasks
