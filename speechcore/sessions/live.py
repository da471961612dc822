"""Live transcription: a VAD stream, a TurnDetector and a TurnTranscriber composed.

Ray-free and model-free: the VAD's streaming call and the ASR call are
injected async callables, and the clock is the audio itself (samples
received), so the same session serves every WebSocket family and unit tests
drive it with fakes.

The VAD's contract (`VadStream`): `(audio, state) -> (probs, frame_seconds, state)`
with a state that only the VAD understands (None to start). The VAD frames the
audio itself and keeps what does not fill a frame in its state; the session
pairs each probability with the next `frame_seconds` of the audio it sent.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.errors import ApiError
from speechcore.sessions.events import Error, error_event
from speechcore.sessions.transcriber import Emit, StreamOptions, Transcribe, TurnTranscriber
from speechcore.sessions.turns import TurnDetector

log = logging.getLogger("speech.sessions")

VadStream = Callable[[np.ndarray, Any], Awaitable[tuple[np.ndarray, float, Any]]]


class LiveSession:
    """One stream: feed 16 kHz float32 audio; turn events, partials, finals and errors arrive through `emit`."""

    def __init__(self, options: StreamOptions, vad: VadStream, transcribe: Transcribe, emit: Emit,
                 partials_allowed: Callable[[], bool] = lambda: True):
        self._vad, self._emit = vad, emit
        self._vad_state: Any = None
        self._pending = np.zeros(0, np.float32)      # audio sent to the VAD, not yet paired with a probability
        self.detector = TurnDetector(options)
        self.transcriber = TurnTranscriber(options, transcribe, emit, partials_allowed)

    @property
    def options(self) -> StreamOptions:
        return self.transcriber.options

    @options.setter
    def options(self, options: StreamOptions) -> None:
        self.detector.options = self.transcriber.options = options

    @property
    def language(self) -> str | None:
        return self.transcriber.language

    @language.setter
    def language(self, language: str | None) -> None:
        self.transcriber.language = language

    @property
    def in_flight(self) -> int:
        return self.transcriber.in_flight

    async def feed(self, audio: np.ndarray) -> None:
        """Run the VAD over `audio` and advance the turns. A failed VAD call skips this audio."""
        audio = audio.astype(np.float32, copy=False)
        try:
            probs, frame_s, self._vad_state = await self._vad(audio, self._vad_state)
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            await self._emit(error_event(err))
            return
        except Exception as exc:  # logged here; the client gets a message without internals
            log.warning("VAD step failed: %r", exc)
            await self._emit(Error("vad_failed", "Voice activity detection failed on some audio; it was skipped "
                                   "and the session goes on."))
            return
        size = round(frame_s * SAMPLE_RATE)
        pending = np.concatenate([self._pending, audio])
        n = min(len(probs), pending.size // size)
        frames = pending[: n * size].reshape(n, size)
        self._pending = pending[n * size:]
        levels = np.sqrt(np.mean(np.square(frames), axis=1))
        for frame, prob, level in zip(frames, probs, levels):
            events = self.detector.step(float(prob), float(level), size)
            self.transcriber.push(frame, self.detector.voiced, events)
            for event in events:
                await self._emit(event)

    @property
    def position(self) -> int:
        """Samples through turn detection so far (the audio clock of the turn events)."""
        return self.detector.clock

    async def commit(self) -> None:
        """End the open turn now (a client's commit) and wait for its final; the stream goes on."""
        events = self.detector.commit()
        self.transcriber.end_of_input(np.zeros(0, np.float32), events)
        for event in events:
            await self._emit(event)
        await self.transcriber.finish()

    async def finish(self) -> None:
        """End of stream: the open turn (with audio too short for a frame) becomes final; wait for every result."""
        events = self.detector.finish(self._pending.size)
        self.transcriber.end_of_input(self._pending, events)
        self._pending = np.zeros(0, np.float32)
        for event in events:
            await self._emit(event)
        await self.transcriber.finish()

    async def close(self) -> None:
        """Drop everything in flight (the client has gone)."""
        await self.transcriber.close()


class AudioFeeder:
    """Audio -> `feed`, off the receive loop and bounded.

    A session that falls behind catches up with one larger call instead of one
    call per message; once `max_samples` are waiting, `put` waits for the
    feeder (the client's socket backs up) instead of buffering without end.
    """

    def __init__(self, feed: Callable[[np.ndarray], Awaitable[None]], max_samples: int):
        self._feed, self._max = feed, max_samples
        self._chunks: list[np.ndarray] = []
        self._size = 0
        self._busy = False
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def put(self, audio: np.ndarray) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._size < self._max)
            self._chunks.append(audio)
            self._size += audio.size
            self._changed.notify_all()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def drain(self) -> None:
        """Wait until everything put so far has been fed."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._chunks and not self._busy)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._chunks))
                chunks, self._chunks, self._size, self._busy = self._chunks, [], 0, True
                self._changed.notify_all()
            try:
                await self._feed(np.concatenate(chunks))
            except Exception as exc:  # `feed` reports its own failures; this keeps the feeder alive
                log.warning("feeding audio failed: %r", exc)
            finally:
                async with self._changed:
                    self._busy = False
                    self._changed.notify_all()
