"""The /test console in a real headless Chromium (Debian's `chromium`, installed by `make test`), driven
over the Chrome DevTools protocol: it connects, configures, sends a text prompt and plays the answer,
then takes a recorded LibriVox clip as its microphone (Chromium's fake capture device) and shows the
committed transcript. The page's own event log (`window.voiceLayer.events`) is what is checked."""
from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from speechcore.audio import decode_audio, wav_bytes
from speechcore.textmetrics import wer
from tests.conftest import free_port
from tests.speech import librivox

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """A minimal DevTools client: evaluate JavaScript in one page and read back JSON values."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    async def js(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 240):
        """Poll until the expression is truthy; returns its value."""
        async with asyncio.timeout(timeout):
            while not (value := await self.js(expression)):
                await asyncio.sleep(0.25)
        return value

    async def events(self, kind: str) -> list[dict]:
        return await self.js(f"JSON.parse(JSON.stringify(window.voiceLayer.events.filter(e => e.type === '{kind}')))")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium with the DevTools port open and a LibriVox clip (then silence) as its microphone."""
    assert CHROMIUM, "Debian's chromium is not installed (make test installs it)"
    path, ref = next((p, r) for p, r in librivox().items() if p.stem.endswith("0880"))
    audio = decode_audio(path.read_bytes())
    mic = tmp_path_factory.mktemp("mic") / "mic.wav"
    mic.write_bytes(wav_bytes(np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(48000, np.float32)])))
    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                             f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                target = next(p for p in pages if p["type"] == "page")
                break
            except (httpx.HTTPError, StopIteration):
                assert time.monotonic() < deadline, "chromium did not open its DevTools port"
                time.sleep(0.5)
        yield target["webSocketDebuggerUrl"], ref
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def test_console_configures_prompts_and_transcribes_the_microphone(browser, base_url):
    debugger_url, ref = browser

    async def scenario():
        async with websockets.connect(debugger_url, max_size=None) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            await page.call("Page.navigate", url=f"{base_url}/test")
            await page.wait_for("document.readyState === 'complete' && !!document.getElementById('connect')")
            await page.js("document.getElementById('connect').click()")
            await page.wait_for("document.getElementById('status').textContent === 'connected'")
            await page.js("document.getElementById('configure').click()")
            await page.wait_for("window.voiceLayer.events.some(e => e.type === 'stt.session_started')")
            await page.js("document.getElementById('prompt').value = 'Say hello in five words.';"
                          "document.getElementById('send-prompt').click()")
            await page.wait_for("window.voiceLayer.events.some(e => e.type === 'assistant.audio.end')")
            answer = await page.js("document.getElementById('answer').textContent")
            played = await page.js("window.voiceLayer.playCtx ? window.voiceLayer.playAt : 0")
            await page.js("document.getElementById('mic-start').click()")
            await page.wait_for("window.voiceLayer.events.some(e => e.type === 'transcript.committed')")
            await page.js("document.getElementById('mic-stop').click()")
            shot = await page.call("Page.captureScreenshot", format="png")
            Path(tempfile.gettempdir(), "voice-layer-test-page.png").write_bytes(
                __import__("base64").b64decode(shot["data"]))
            return (answer, played, await page.events("assistant.message"), await page.events("assistant.audio.chunk"),
                    await page.events("transcript.committed"), await page.js("document.getElementById('transcript')"
                                                                             ".textContent"),
                    await page.events("error"))

    answer, played, messages, chunks, committed, shown, errors = asyncio.run(scenario())
    assert not errors, errors
    assert messages and messages[0]["text"].strip() and messages[0]["text"] in answer
    assert chunks and chunks[0]["output_format"] == "pcm_24000" and played > 0.5   # scheduled for playback
    assert wer(ref, committed[0]["text"]) <= 0.25, committed[0]["text"]
    assert committed[0]["text"].strip() in shown
