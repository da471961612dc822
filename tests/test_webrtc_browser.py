"""A real headless Chromium holds a spoken conversation with the server over WebRTC.

The page is the server's own `GET /webrtc` (the platform document's flow:
sendrecv transceiver, getUserMedia, the `chat` channel, candidates queued
until the answer and trickled to /ice, then null). Chromium's fake microphone
plays a recorded question once; the browser's SDP, ICE, DTLS and Opus must
all really work for the transcription and the answer to come back.
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import numpy as np
import pytest

from speechcore.audio import SAMPLE_RATE, decode_audio, resample, wav_bytes
from speechcore.textmetrics import wer
from tests.browser import CHROMIUM, Browser
from tests.speech import librivox

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by `make test`")

QUESTION = next(p for p in librivox() if p.name.endswith("0880.wav"))


def test_chromium_talks_to_the_agent(base_url, tmp_path):
    speech = resample(decode_audio(str(QUESTION)), SAMPLE_RATE, 48000)
    wav = tmp_path / "mic.wav"
    wav.write_bytes(wav_bytes(np.concatenate([np.zeros(48000, np.float32), speech,
                                              np.zeros(3 * 48000, np.float32)]), 48000))
    query = urlencode({"autostart": 1, "only": "127.0.0.1", "language": "en",
                       "prompt": "You are a friendly assistant. Answer in one short sentence."})

    async def scenario():
        browser = Browser(wav)
        try:
            await browser.open(f"{base_url}/webrtc?{query}")
            done = "window.events.some(e => e.type === 'agent_end') && JSON.stringify(window.events)"
            events = json.loads(await browser.wait(done, 240))
            return events, await browser.evaluate("!!window.remoteTrack")
        finally:
            await browser.close()

    events, remote_track = asyncio.run(scenario())
    kinds = [e["type"] for e in events]
    heard = next(e["text"] for e in events if e["type"] == "transcription")
    assert "open" in kinds and "ready" in kinds and remote_track
    assert wer(librivox()[QUESTION], heard) < 0.3, heard
    assert kinds.index("transcription") < kinds.index("agent_text") < kinds.index("agent_end")
    assert "".join(e["text"] for e in events if e["type"] == "agent_text").strip()
