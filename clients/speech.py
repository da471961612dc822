"""Typed Python client for the speech server, sync (`SpeechClient`) and async (`AsyncSpeechClient`).

    from clients.speech import SpeechClient
    with SpeechClient("http://localhost:8000") as c:
        t = c.transcribe("call.wav", words=True)            # Transcription(text, language, segments[words])
        wav = c.speech("Hello there")                        # bytes; c.stream_speech(...) yields chunks
        c.enroll("alice", "alice.wav"); c.identify("who.wav")
        c.chat([{"role": "user", "content": "Hi"}], model="smollm2-135m")   # c.stream_chat(...) yields pieces
        finals = [e.text for e in c.live(audio) if e.is_final]   # audio: float32 16 kHz numpy array

Each endpoint is one typed `Call` in `clients.calls`; both clients run the same
calls. Errors raise `SpeechError` (status, code, message, retry_after_s).
Installed with the project (`pip install -e .`; needs httpx, websockets, numpy).
"""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

import httpx
import numpy as np
import websockets

from clients import calls
from clients.calls import Audio, Job, JobResult, SpeakerDecision, SpoofResult, Transcription, Voice, check
from clients.live import PROTOCOLS, LiveEvent
from clients.sockets import ChatEvent, TtsSocket, VoiceChat

T = TypeVar("T")
Progress = Callable[[Job], None]
"""Called with the job at every poll (status, progress 0..1)."""


class _Config:
    def __init__(self, base_url: str = "http://localhost:8000", api_key: str | None = None, timeout: float = 600):
        self.base_url, self.api_key = base_url.rstrip("/"), api_key
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout


class AsyncSpeechClient(_Config):
    def __init__(self, base_url: str = "http://localhost:8000", api_key: str | None = None, timeout: float = 600):
        super().__init__(base_url, api_key, timeout)
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout)

    async def __aenter__(self) -> AsyncSpeechClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def run(self, call: calls.Call[T]) -> T:
        r = await self.http.request(call.method, call.path, **call.kwargs)
        return call.parse(check(r) if call.checked else r)

    async def transcribe(self, audio: Audio, **options: Any) -> Transcription:
        """Options: model, language, words, translate, prompt (see `calls.transcribe`)."""
        return await self.run(calls.transcribe(audio, **options))

    async def models(self) -> list[str]:
        return await self.run(calls.models())

    async def speech(self, text: str, voice: str | None = None, speed: float = 1.0, fmt: str = "wav") -> bytes:
        return await self.run(calls.speech(text, voice, speed, fmt))

    async def stream_speech(self, text: str, voice: str | None = None, speed: float = 1.0,
                            fmt: str = "raw") -> AsyncIterator[bytes]:
        """Audio chunks as the server synthesizes them (first audio before the whole text is spoken)."""
        async with self._stream(calls.speech(text, voice, speed, fmt)) as r:
            async for chunk in r.aiter_bytes():
                yield chunk

    async def stream_chat(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None,
                          temperature: float | None = None) -> AsyncIterator[str]:
        """The answer's text pieces as the model writes them (`stream: true`)."""
        async with self._stream(calls.chat(messages, model, max_tokens, temperature, stream=True)) as r:
            async for line in r.aiter_lines():
                if piece := calls.chat_delta(line):
                    yield piece

    @asynccontextmanager
    async def _stream(self, call: calls.Call[Any]) -> AsyncIterator[httpx.Response]:
        async with self.http.stream(call.method, call.path, **call.kwargs) as r:
            if not r.is_success:
                await r.aread()
                check(r)
            yield r

    async def voices(self, language: str | None = None) -> list[Voice]:
        return await self.run(calls.voices(language))

    async def speakers(self) -> list[str]:
        return await self.run(calls.speakers())

    async def enroll(self, name: str, audio: Audio) -> int:
        return await self.run(calls.enroll(name, audio))

    async def delete_speaker(self, name: str) -> None:
        return await self.run(calls.delete_speaker(name))

    async def identify(self, audio: Audio) -> SpeakerDecision:
        return await self.run(calls.identify(audio))

    async def verify(self, name: str, audio: Audio) -> SpeakerDecision:
        return await self.run(calls.verify(name, audio))

    async def anti_spoof(self, files: list[Audio], mode: str = "bank_flex") -> list[SpoofResult]:
        return await self.run(calls.anti_spoof(files, mode))

    async def voice_profile(self, audio: Audio) -> dict[str, Any]:
        return await self.run(calls.voice_profile(audio))

    async def chat(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None,
                   temperature: float | None = None) -> str:
        return await self.run(calls.chat(messages, model, max_tokens, temperature))

    async def ready(self) -> bool:
        return await self.run(calls.ready())

    async def submit_job(self, audio: Audio, **options: Any) -> Job:
        """Options: language, min_speakers, max_speakers, denoise_model, snr_threshold, no_repeat_ngram_size."""
        return await self.run(calls.submit_job(audio, **options))

    async def job(self, job_id: str) -> Job:
        return await self.run(calls.job(job_id))

    async def jobs(self) -> list[Job]:
        return await self.run(calls.jobs())

    async def job_result(self, job_id: str) -> JobResult:
        return await self.run(calls.job_result(job_id))

    async def export_job(self, job_id: str, fmt: str = "srt") -> str:
        return await self.run(calls.export_job(job_id, fmt))

    async def wait_job(self, job_id: str, on_progress: Progress | None = None, interval_s: float = 1.0,
                       timeout_s: float = 3600) -> Job:
        """Polls until the job completes (SpeechError when it failed, TimeoutError past `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while not (j := await self.job(job_id)).done and time.monotonic() < deadline:
            if on_progress:
                on_progress(j)
            await asyncio.sleep(interval_s)
        return _finished(j, on_progress)

    async def transcribe_job(self, audio: Audio, on_progress: Progress | None = None, interval_s: float = 1.0,
                             **options: Any) -> JobResult:
        """Submit, wait, and the diarized result."""
        j = await self.wait_job((await self.submit_job(audio, **options)).id, on_progress, interval_s)
        assert j.result is not None
        return j.result

    def tts_socket(self) -> TtsSocket:
        """A `/ws/tts` connection for several requests: `async with c.tts_socket() as s: s.speak(...)`."""
        return TtsSocket(self.base_url, self.headers)

    async def tts_stream(self, text: str, **voice: Any) -> AsyncIterator[bytes]:
        """PCM int16 24 kHz chunks of `text` over `/ws/tts` (voice: speaker_id, collection_id, language, speed)."""
        async with self.tts_socket() as tts:
            async for chunk in tts.speak(text, **voice):
                yield chunk

    def voice_chat(self, config: dict[str, Any] | None = None, query: str = "") -> VoiceChat:
        """A `/ws/voice-chat` session (`async with`): config fields as README "Voice chat" lists them."""
        return VoiceChat(self.base_url, config, self.headers, query)

    async def live(self, audio: np.ndarray, protocol: str = "platform", speed: float = 1.0, chunk_s: float = 0.1,
                   query: str = "") -> AsyncIterator[LiveEvent]:
        """Stream `audio` (float32, 16 kHz mono) paced at `speed` x real time (0: as fast as possible) and
        yield the server's events until it closes the session after the end message."""
        proto = PROTOCOLS[protocol]()
        url = self.base_url.replace("http", "ws", 1) + proto.path + (f"?{query}" if query else "")
        async with websockets.connect(url, additional_headers=self.headers, max_size=None, open_timeout=60) as ws:
            sender = asyncio.create_task(_send_paced(ws, proto, audio, speed, chunk_s))
            try:
                async for message in ws:
                    yield proto.event(message)
            except websockets.ConnectionClosed:
                pass
            finally:
                sender.cancel()


async def _send_paced(ws: Any, proto: Any, audio: np.ndarray, speed: float, chunk_s: float) -> None:
    step = int(chunk_s * 16000)
    try:
        for m in proto.start():
            await ws.send(m)
        start = time.perf_counter()
        for i, at in enumerate(range(0, audio.size, step)):
            if speed > 0:
                await asyncio.sleep(max(0.0, start + i * chunk_s / speed - time.perf_counter()))
            await ws.send(proto.audio(audio[at:at + step]))
        for m in proto.end():
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass                          # the server ended the session; its reason comes as an event


class SpeechClient(_Config):
    """The same API, blocking."""

    def __init__(self, base_url: str = "http://localhost:8000", api_key: str | None = None, timeout: float = 600):
        super().__init__(base_url, api_key, timeout)
        self.http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)

    def __enter__(self) -> SpeechClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def run(self, call: calls.Call[T]) -> T:
        r = self.http.request(call.method, call.path, **call.kwargs)
        return call.parse(check(r) if call.checked else r)

    def transcribe(self, audio: Audio, **options: Any) -> Transcription:
        return self.run(calls.transcribe(audio, **options))

    def models(self) -> list[str]:
        return self.run(calls.models())

    def speech(self, text: str, voice: str | None = None, speed: float = 1.0, fmt: str = "wav") -> bytes:
        return self.run(calls.speech(text, voice, speed, fmt))

    def stream_speech(self, text: str, voice: str | None = None, speed: float = 1.0,
                      fmt: str = "raw") -> Iterator[bytes]:
        with self._stream(calls.speech(text, voice, speed, fmt)) as r:
            yield from r.iter_bytes()

    def stream_chat(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None,
                    temperature: float | None = None) -> Iterator[str]:
        with self._stream(calls.chat(messages, model, max_tokens, temperature, stream=True)) as r:
            for line in r.iter_lines():
                if piece := calls.chat_delta(line):
                    yield piece

    @contextmanager
    def _stream(self, call: calls.Call[Any]) -> Iterator[httpx.Response]:
        with self.http.stream(call.method, call.path, **call.kwargs) as r:
            if not r.is_success:
                r.read()
                check(r)
            yield r

    def voices(self, language: str | None = None) -> list[Voice]:
        return self.run(calls.voices(language))

    def speakers(self) -> list[str]:
        return self.run(calls.speakers())

    def enroll(self, name: str, audio: Audio) -> int:
        return self.run(calls.enroll(name, audio))

    def delete_speaker(self, name: str) -> None:
        return self.run(calls.delete_speaker(name))

    def identify(self, audio: Audio) -> SpeakerDecision:
        return self.run(calls.identify(audio))

    def verify(self, name: str, audio: Audio) -> SpeakerDecision:
        return self.run(calls.verify(name, audio))

    def anti_spoof(self, files: list[Audio], mode: str = "bank_flex") -> list[SpoofResult]:
        return self.run(calls.anti_spoof(files, mode))

    def voice_profile(self, audio: Audio) -> dict[str, Any]:
        return self.run(calls.voice_profile(audio))

    def chat(self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None,
             temperature: float | None = None) -> str:
        return self.run(calls.chat(messages, model, max_tokens, temperature))

    def ready(self) -> bool:
        return self.run(calls.ready())

    def submit_job(self, audio: Audio, **options: Any) -> Job:
        return self.run(calls.submit_job(audio, **options))

    def job(self, job_id: str) -> Job:
        return self.run(calls.job(job_id))

    def jobs(self) -> list[Job]:
        return self.run(calls.jobs())

    def job_result(self, job_id: str) -> JobResult:
        return self.run(calls.job_result(job_id))

    def export_job(self, job_id: str, fmt: str = "srt") -> str:
        return self.run(calls.export_job(job_id, fmt))

    def wait_job(self, job_id: str, on_progress: Progress | None = None, interval_s: float = 1.0,
                 timeout_s: float = 3600) -> Job:
        deadline = time.monotonic() + timeout_s
        while not (j := self.job(job_id)).done and time.monotonic() < deadline:
            if on_progress:
                on_progress(j)
            time.sleep(interval_s)
        return _finished(j, on_progress)

    def transcribe_job(self, audio: Audio, on_progress: Progress | None = None, interval_s: float = 1.0,
                       **options: Any) -> JobResult:
        j = self.wait_job(self.submit_job(audio, **options).id, on_progress, interval_s)
        assert j.result is not None
        return j.result

    def tts_stream(self, text: str, **voice: Any) -> list[bytes]:
        """Every PCM int16 24 kHz chunk of `text` over `/ws/tts`."""
        return self._async(lambda c: _collect(c.tts_stream(text, **voice)))

    def voice_chat_turn(self, text: str, config: dict[str, Any] | None = None) -> list[ChatEvent]:
        """One text turn of a fresh voice chat session: its events up to `agent_end`."""
        async def turn(c: AsyncSpeechClient) -> list[ChatEvent]:
            async with c.voice_chat(config) as chat:
                await chat.send_text(text)
                return await chat.turn()
        return self._async(turn)

    def _async(self, fn: Callable[[AsyncSpeechClient], Any]) -> Any:
        """Runs `fn` with an async client on this client's settings (the WebSocket families are async)."""
        async def go() -> Any:
            async with AsyncSpeechClient(self.base_url, self.api_key, self.timeout) as c:
                return await fn(c)
        return asyncio.run(go())

    def live(self, audio: np.ndarray, protocol: str = "platform", speed: float = 1.0, chunk_s: float = 0.1,
             query: str = "") -> list[LiveEvent]:
        """Every event of a live session over `audio` (runs the async client's session to the end)."""
        return self._async(lambda c: _collect(c.live(audio, protocol, speed, chunk_s, query)))


async def _collect(items: AsyncIterator[T]) -> list[T]:
    return [x async for x in items]


def _finished(j: Job, on_progress: Progress | None) -> Job:
    if on_progress:
        on_progress(j)
    if not j.done:
        raise TimeoutError(f"job {j.id} still {j.status}")
    return calls.failed(j)
