"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for browser tests.

The fake media device plays a wav file as the microphone, once; `evaluate`
reads the page's state. Loopback only: the page trickles loopback candidates.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, microphone_wav: Path):
        self.profile = tempfile.mkdtemp(prefix="chromium-test-")
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={microphone_wav}%noloop", "--allow-loopback-in-peer-connection",
             "--autoplay-policy=no-user-gesture-required", "--no-first-run", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = self._devtools_port()
        self._ws: Any = None
        self._id = 0

    def _devtools_port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        for _ in range(300):
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not start")

    async def open(self, url: str) -> None:
        """A new tab navigated to `url` (by the protocol, so the URL's own query string stays whole)."""
        target = httpx.put(f"http://127.0.0.1:{self.port}/json/new?about:blank").json()
        self._ws = await connect(target["webSocketDebuggerUrl"], max_size=None)
        await self.send("Page.navigate", {"url": url})

    async def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        await self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("id") == self._id:
                return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    async def wait(self, expression: str, timeout_s: float) -> Any:
        async def loop() -> Any:
            while not (value := await self.evaluate(expression)):
                await asyncio.sleep(0.3)
            return value
        return await asyncio.wait_for(loop(), timeout_s)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
