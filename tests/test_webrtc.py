"""The WebRTC voice agent end to end: a real aiortc client peer on loopback against the app under Ray Serve.

The client offers, trickles its ICE candidates through /ice, sends recorded
speech as its microphone track and records the agent's audio track and the
`chat` DataChannel; the agent's audio is transcribed back by the server's own
ASR and compared with the agent's text.
"""
from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from speechcore.audio import SAMPLE_RATE, wav_bytes
from speechcore.textmetrics import wer
from tests.rtc_client import Client, peers, settled, voiced_seconds, words
from tests.speech import best_error, librivox

QUESTION = next(p for p in librivox() if p.name.endswith("0880.wav"))     # "he was not an ill disposed young man"
INTERRUPTION = next(p for p in librivox() if p.name.endswith("0930.wav"))
ENGLISH = {"language": "en", "user_system_prompt": "You are a friendly assistant. Answer in one short sentence of plain English."}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def transcribe(client: Client, audio) -> str:
    response = await client.http.post("/v1/audio/transcriptions", data={"model": "whisper-1", "language": "en"},
                                      files={"file": ("agent.wav", wav_bytes(audio, SAMPLE_RATE), "audio/wav")})
    response.raise_for_status()
    return response.json()["text"]


async def answer_played(client: Client, count: int = 1) -> None:
    """The answer's text is complete, the engine is listening again (it has sent all the audio and waited
    for its playout) and a second of silence has arrived since. Silence alone is not the end: on a loaded
    machine synthesis of the next sentence can lag its playout by more than a second."""
    await client.wait_message("agent_end", 180, count)
    await listening(client, 180)
    await client.wait_for(lambda: client.audio and voiced_seconds(client.received(client.audio[-1][0] - 1.0)) == 0
                          and client.audio[-1][0] - 1.0 > client.of("agent_end")[count - 1]["at"], 60)


async def listening(client: Client, timeout_s: float) -> None:
    """This peer's conversation is back in `listening` (as /status reports it)."""
    async def loop() -> None:
        while True:
            state = (await client.http.get("/status")).json()["webrtc"]
            if any(p["pc_id"] == client.pc_id and p["conversation"] == "listening" for p in state["peers"]):
                return
            await asyncio.sleep(0.25)
    await asyncio.wait_for(loop(), timeout_s)


def test_spoken_question_over_webrtc(base_url):
    """Speech in -> transcription and agent_text on the channel -> agent speech on the track, which the
    server's ASR transcribes back to the agent's text; /status counts the peer while it is open."""
    async def scenario():
        client = Client(base_url)
        try:
            await client.connect(**ENGLISH)
            assert (await peers(base_url))["active_peers"] == 1
            client.say(QUESTION, silence_s=1.0)
            heard = await client.wait_message("transcription")
            await answer_played(client)
            spoken = await transcribe(client, client.received(heard["at"]))
            return heard["text"], client.agent_text(), spoken, client.of("error")
        finally:
            await client.close()

    def turn() -> float:
        heard, text, spoken, errors = run(scenario())
        assert not errors
        assert wer(librivox()[QUESTION], heard) < 0.3, heard
        assert len(words(text).split()) >= 2, text
        return wer(words(text), words(spoken))
    assert best_error(turn, 0.399) < 0.4      # Piper varies: the turn is tried again (see best_error)


def test_text_message_gets_a_spoken_answer(base_url):
    """A plain string on the channel is a user turn: no transcription, an answer in text and in speech."""
    async def scenario():
        client = Client(base_url)
        try:
            await client.connect(**ENGLISH)
            client.channel.send("What do people use an umbrella for?")
            await answer_played(client)
            return client, await transcribe(client, client.received())
        finally:
            await client.close()

    def turn() -> float:
        client, spoken = run(scenario())
        assert not client.of("transcription")                   # text input bypasses the ASR
        text = client.agent_text()
        assert len(words(text).split()) >= 2, text
        assert voiced_seconds(client.received()) > 0.5
        return wer(words(text), words(spoken))
    assert best_error(turn, 0.399) < 0.4


def test_barge_in_cuts_the_agents_audio(base_url):
    """Speech while the agent talks: `interrupted` on the channel and its audio stops at once."""
    async def scenario():
        client = Client(base_url)
        try:
            await client.connect(language="en", user_system_prompt="You are a storyteller. Tell long stories.")
            client.channel.send("Tell me a long story about a dragon and a knight.")
            await client.wait_for(lambda: voiced_seconds(client.received()) > 1.0, 180)
            client.say(INTERRUPTION, silence_s=1.0)
            cut = await client.wait_message("interrupted", 60)
            await asyncio.sleep(2.0)
            before = voiced_seconds(client.received(until=cut["at"]))
            after = voiced_seconds(client.received(since=cut["at"] + 0.3, until=cut["at"] + 2.0))
            return cut, before, after, client.of("agent_end")
        finally:
            await client.close()

    cut, before, after, ends = run(scenario())
    assert before > 1.0
    assert after < 0.2, f"{after:.2f} s of agent speech after the interruption"
    assert cut["heard"].split()                                   # what was played before the cut
    assert ends                                                  # the reply ended (cut short, or its text done)


def test_signalling_errors(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as http:
        bad = http.post("/offer", json={"sdp": "this is not sdp", "type": "offer"})
        assert bad.status_code == 400 and "SDP" in bad.json()["detail"]
        assert http.post("/offer", json={"type": "offer"}).status_code == 422
        assert http.post("/offer", json={"sdp": "v=0", "type": "answer"}).status_code == 422
        unknown = http.post("/ice", json={"pc_id": "nope", "candidate": None})
        assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
        speaker = http.post("/offer", json={"sdp": "v=0", "type": "offer", "speaker_id": "not-a-speaker"})
        assert speaker.status_code in (400, 404) and "speaker" in speaker.json()["detail"].lower()
        clone = http.post("/offer", json={"sdp": "v=0", "type": "offer", "reference_audio": "en.wav",
                                          "reference_text": "hello"})
        assert clone.status_code == 400 and "clone" in clone.json()["detail"]


def test_peer_limit_and_timeouts(base_url):
    """Offers that never connect hold slots until the ICE timeout; one over the limit is refused with 503."""
    async def scenario():
        await settled(base_url)
        clients = [Client(base_url) for _ in range(5)]
        try:
            limit = (await peers(base_url))["max_peers"]
            for client in clients[:limit]:
                await client.pc.setLocalDescription(await client.pc.createOffer())
                bare = "".join(f"{line}\r\n" for line in client.pc.localDescription.sdp.splitlines()
                               if not line.startswith(("a=candidate:", "a=end-of-candidates")))    # no candidate ever: never connects
                r = await client.http.post("/offer", json={"sdp": bare, "type": "offer", **ENGLISH})
                assert r.status_code == 200
            extra = clients[-1]
            await extra.pc.setLocalDescription(await extra.pc.createOffer())
            refused = await extra.http.post("/offer", json={"sdp": extra.pc.localDescription.sdp, "type": "offer"})
            full = await peers(base_url)
            for _ in range(60):
                after = await peers(base_url)
                if after["active_peers"] == 0:
                    break
                await asyncio.sleep(0.5)
            return limit, refused, full, after
        finally:
            for client in clients:
                await client.close()

    limit, refused, full, after = run(scenario())
    assert refused.status_code == 503 and refused.json()["detail"].startswith("The server holds its limit")
    assert full["active_peers"] == limit and full["refused"] >= 1
    assert after["active_peers"] == 0 and after["closes"].get("ICE did not connect", 0) >= limit


def test_silent_microphone_closes_the_peer(base_url):
    async def scenario():
        await settled(base_url)
        client = Client(base_url)
        try:
            await client.connect(**ENGLISH)
            client.mic.stop()                                   # the microphone goes away, the connection stays
            for _ in range(60):
                state = await peers(base_url)
                if client.pc_id not in [p["pc_id"] for p in state["peers"]]:
                    break
                await asyncio.sleep(0.5)
            return state
        finally:
            await client.close()

    state = run(scenario())
    assert state["closes"].get("no microphone audio", 0) >= 1
    assert state["active_peers"] == 0
