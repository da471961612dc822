"""Locust load test for the HTTP families, with real recordings and a weighted mix:
transcription, TTS, speaker verification, and chat completions when the server has them.

    .venv/bin/pip install -r requirements-loadtest.txt
    .venv/bin/locust -f loadtest/locustfile.py --host http://localhost:8000 --headless -u 8 -r 2 -t 2m

Requests are built by the client library's typed calls (clients/calls.py). Each user waits for a
constant throughput of one request per `SPEECH_LOADTEST_PACE_S` seconds (default 2), so the offered
load is users / pace; failures are counted per status and code. For open-loop sweeps with p95 tables
and plots, use loadtest/run.py.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from locust import HttpUser, constant_throughput, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from clients import calls  # noqa: E402
from clients.calls import Call, SpeechError, check  # noqa: E402

FIXTURES = Path(os.environ.get("SPEECH_FIXTURES_DIR", Path(__file__).resolve().parent.parent / "fixtures"))
CLIPS = sorted((FIXTURES / "librivox").glob("*.wav"))
PACE_S = float(os.environ.get("SPEECH_LOADTEST_PACE_S", "2"))


class SpeechUser(HttpUser):
    wait_time = constant_throughput(1 / PACE_S)

    def on_start(self) -> None:
        self.long, self.short = CLIPS[0].read_bytes(), CLIPS[1].read_bytes()
        self.call(calls.enroll("locust-reader", CLIPS[2]), "enroll")
        paths = self.client.get("/openapi.json").json().get("paths", {})
        self.has_chat = "/v1/chat/completions" in paths
        self.llm = os.environ.get("SPEECH_LOADTEST_LLM", "smollm2-135m")

    def call(self, c: Call, name: str) -> None:
        with self.client.request(c.method, c.path, name=name, catch_response=True, **c.kwargs) as r:
            try:
                c.parse(check(r))   # type: ignore[arg-type]   # requests' Response reads the same here
                r.success()
            except SpeechError as err:
                r.failure(f"{err.status} {err.code}")

    @task(4)
    def transcribe(self) -> None:
        self.call(calls.transcribe(self.long, model="whisper-1", language="en"), "transcription")

    @task(3)
    def speech(self) -> None:
        self.call(calls.speech("Thank you for calling. Your appointment is confirmed."), "tts")

    @task(3)
    def verify(self) -> None:
        self.call(calls.verify("locust-reader", self.short), "speaker verification")

    @task(2)
    def chat(self) -> None:
        if self.has_chat:
            self.call(calls.chat([{"role": "user", "content": "Say hello in five words."}], self.llm, 24), "chat")
