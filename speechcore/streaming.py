"""Live transcription session engine: VAD-gated turns, partials, end-of-turn finals.

Ray-free and model-free: the VAD step and the ASR call are injected async
callables, and the clock is the audio itself (samples received), so the same
engine serves every WebSocket family and unit tests drive it with fakes.

Per 32 ms frame: a frame is voiced when Silero's probability passes the
threshold and its RMS passes `volume_threshold`. A turn opens on a voiced
frame (with `pre_roll_ms` of audio before it), emits a partial whenever
`partial_interval` more voiced audio has arrived, and ends after `silence_ms`
of unvoiced frames. End-of-turn latency is the product, so the final decode
starts speculatively `speculate_ms` into the silence; if speech resumes the
guess is dropped, otherwise its result is the final as soon as the silence
timer expires.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechcore.audio import SAMPLE_RATE
from speechcore.errors import ApiError
from speechcore.schemas import TranscribeOptions, Transcript
from speechcore.vad import FRAME_SAMPLES

T = TypeVar("T")
log = logging.getLogger("speech.streaming")

CONTEXT = 64                     # Silero's context samples carried between frames
STATE_SHAPE = (2, 1, 128)        # Silero's recurrent state for one stream


class StreamError(ApiError):
    """A problem with one live session. `close_code` set: the session ends with that WebSocket code."""

    def __init__(self, code: str, message: str, close_code: int | None = None, status: int = 400):
        super().__init__(status=status, code=code, message=message)
        self.close_code = close_code


class StreamOptions(BaseModel):
    """Per-session knobs (query parameters or config message fields); defaults are the server's."""
    model_config = ConfigDict(extra="ignore")

    silence_ms: int = Field(300, ge=64, le=5000, description="Silence that ends a turn.")
    volume_threshold: float = Field(0.01, ge=0.0, le=1.0, description="RMS gate under which a frame is silence.")
    partial_interval: float = Field(1.0, ge=0.2, le=30.0, description="Voiced seconds between partials.")
    vad_threshold: float = Field(0.5, ge=0.05, le=0.95, description="Silero probability that opens a turn.")
    speculate_ms: int = Field(160, ge=0, le=5000, description="Silence after which the final decode starts early.")
    pre_roll_ms: int = Field(256, ge=0, le=1000, description="Audio kept before the first voiced frame.")
    min_speech_ms: int = Field(160, ge=0, le=2000, description="Turns with less voiced audio are dropped.")
    max_turn_s: float = Field(25.0, ge=2.0, le=29.0, description="A longer turn is finalised (Whisper's window).")
    language: str | None = Field(None, max_length=8, description="Language hint; else detected once per session.")
    word_timestamps: bool = False
    partial_beam_size: int = Field(1, ge=1, le=10)
    final_beam_size: int = Field(1, ge=1, le=10)

    def updated(self, fields: dict[str, Any]) -> "StreamOptions":
        """A copy with `fields` applied (unknown keys ignored); StreamError on a bad value."""
        known = {k: v for k, v in fields.items() if k in type(self).model_fields and v is not None}
        try:
            return type(self).model_validate({**self.model_dump(), **known})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise StreamError("invalid_config", f"{where}: {first['msg']}") from exc


@dataclass
class TurnResult:
    """A partial or final transcript of one turn; times are seconds from the start of the stream."""
    turn: int
    is_final: bool
    transcript: Transcript
    start_s: float
    end_s: float
    offset_s: float = 0.0             # where the decoded audio starts (transcript times are relative to it)
    audio: np.ndarray | None = None   # the turn's audio, on finals (for voice profiling)


VadStep = Callable[[np.ndarray, np.ndarray], Awaitable[tuple[np.ndarray, np.ndarray]]]
Transcribe = Callable[[np.ndarray, TranscribeOptions], Awaitable[Transcript]]
Emit = Callable[["TurnResult | ApiError"], Awaitable[None]]


@dataclass
class _Turn:
    id: int
    start: int                                  # stream sample where the turn's audio starts
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    voiced: int = 0                             # voiced samples so far
    voiced_start: int = 0                       # stream sample of the first voiced frame
    voiced_end: int = 0                         # stream sample after the last voiced frame
    silence: int = 0                            # unvoiced samples since then
    partial_mark: int = 0                       # `voiced` when the last partial started
    partial_task: asyncio.Task[Any] | None = None
    guess: asyncio.Task[Any] | None = None           # speculative final decode
    guess_end: int = 0

    def audio(self, end: int | None = None) -> np.ndarray:
        joined = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        self.chunks = [joined]
        return joined if end is None else joined[: max(0, end - self.start)]


class LiveSession:
    """One stream's turn state machine. Feed 16 kHz float32 audio; results arrive through `emit`."""

    def __init__(self, options: StreamOptions, vad_step: VadStep, transcribe: Transcribe, emit: Emit,
                 partials_allowed: Callable[[], bool] = lambda: True):
        self.options = options
        self._vad_step, self._transcribe, self._emit = vad_step, transcribe, emit
        self._partials_allowed = partials_allowed     # False while the ASR is busy: finals go first
        self._state = np.zeros(STATE_SHAPE, np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._leftover = np.zeros(0, np.float32)
        self._pre_roll: list[np.ndarray] = []
        self._clock = 0                         # samples framed so far
        self._turn: _Turn | None = None
        self._turn_ids = 0
        self._finals_done = 0                   # finals emitted (or dropped), in turn order
        self._last_final: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.language = options.language

    # -- input -------------------------------------------------------------------------------
    async def feed(self, audio: np.ndarray) -> None:
        """Run the VAD over every whole frame of `audio` and advance the turn state."""
        audio = np.concatenate([self._leftover, audio.astype(np.float32, copy=False)])
        n = audio.size // FRAME_SAMPLES
        self._leftover = audio[n * FRAME_SAMPLES:]
        if n == 0:
            return
        frames = audio[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
        with_context = np.concatenate([np.vstack([self._context, frames[:-1, -CONTEXT:]]), frames], axis=1)
        probs, self._state = await self._vad_step(with_context, self._state)
        self._context = frames[-1, -CONTEXT:].copy()
        rms = np.sqrt(np.mean(np.square(frames), axis=1))
        for frame, p, level in zip(frames, probs, rms):
            self._step(frame, float(p), float(level))

    async def finish(self) -> None:
        """End of stream: the open turn (with any leftover audio) becomes final; wait for every result."""
        if self._turn is not None:
            if self._leftover.size:
                self._turn.chunks.append(self._leftover)
                self._turn.samples += self._leftover.size
                self._turn.voiced_end = self._turn.start + self._turn.samples
            self._end_turn()
        self._leftover = np.zeros(0, np.float32)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Drop everything in flight (the client has gone)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._tasks.clear()
        self._turn = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # -- state machine -----------------------------------------------------------------------
    def _step(self, frame: np.ndarray, prob: float, level: float) -> None:
        o = self.options
        start = self._clock
        self._clock += FRAME_SAMPLES
        loud = level >= o.volume_threshold
        turn = self._turn
        if turn is None:
            if prob >= o.vad_threshold and loud:
                self._open_turn(frame, start)
            else:
                self._remember(frame)
            return
        turn.chunks.append(frame)
        turn.samples += FRAME_SAMPLES
        if prob >= o.vad_threshold - 0.15 and loud:   # Silero's hysteresis: stay open a little lower
            turn.voiced += FRAME_SAMPLES
            turn.voiced_end = self._clock
            turn.silence = 0
            self._drop_guess(turn)
        else:
            turn.silence += FRAME_SAMPLES
        if turn.silence >= _samples(o.silence_ms) or turn.samples >= o.max_turn_s * SAMPLE_RATE:
            self._end_turn()
            return
        if turn.silence >= _samples(o.speculate_ms) and turn.guess is None and turn.silence:
            turn.guess_end = self._clock
            turn.guess = self._spawn(self._decode(turn.audio(), final=True))
        if (turn.voiced - turn.partial_mark >= o.partial_interval * SAMPLE_RATE and turn.partial_task is None
                and turn.guess is None and self._partials_allowed()):
            turn.partial_mark = turn.voiced
            turn.partial_task = self._spawn(self._partial(turn))

    def _remember(self, frame: np.ndarray) -> None:
        self._pre_roll.append(frame)
        keep = max(0, _samples(self.options.pre_roll_ms) // FRAME_SAMPLES)
        del self._pre_roll[: max(0, len(self._pre_roll) - keep)]

    def _open_turn(self, frame: np.ndarray, start: int) -> None:
        chunks = [*self._pre_roll, frame]
        samples = FRAME_SAMPLES * len(chunks)
        self._pre_roll = []
        self._turn = _Turn(id=self._turn_ids, start=start + FRAME_SAMPLES - samples, chunks=chunks,
                           samples=samples, voiced=FRAME_SAMPLES, voiced_start=start,
                           voiced_end=start + FRAME_SAMPLES)
        self._turn_ids += 1

    @staticmethod
    def _drop_partial(turn: _Turn) -> None:
        if turn.partial_task is not None:
            turn.partial_task.cancel()
            turn.partial_task = None

    def _drop_guess(self, turn: _Turn) -> None:
        if turn.guess is not None:
            turn.guess.cancel()
            turn.guess = None

    def _end_turn(self) -> None:
        turn, self._turn = self._turn, None
        assert turn is not None   # called only while a turn is open
        self._drop_partial(turn)
        if turn.voiced < _samples(self.options.min_speech_ms):
            self._drop_guess(turn)
            self._last_final = self._spawn(self._final(turn, None, self._last_final))
            return
        if turn.guess is None:
            turn.guess_end = turn.start + turn.samples
            turn.guess = self._spawn(self._decode(turn.audio(), final=True))
        self._last_final = self._spawn(self._final(turn, turn.guess, self._last_final))

    # -- model calls and results -------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(_forget)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _decode(self, audio: np.ndarray, final: bool) -> Transcript:
        o = self.options
        opts = TranscribeOptions(language=self.language, word_timestamps=final and o.word_timestamps,
                                 beam_size=o.final_beam_size if final else o.partial_beam_size,
                                 fast_window=not final)   # partials are previews: speed first
        transcript = await self._transcribe(audio, opts)
        if self.language is None and transcript.language:
            self.language = transcript.language          # detection costs a pass: do it once
        return transcript

    async def _partial(self, turn: _Turn) -> None:
        try:
            end = turn.start + turn.samples
            transcript = await self._decode(turn.audio(), final=False)
            if self._turn is turn and self._finals_done == turn.id and transcript.text:
                await self._emit(TurnResult(turn.id, False, transcript, *self._span(turn, end),
                                            offset_s=turn.start / SAMPLE_RATE))
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            await self._emit(err)
        except Exception as exc:  # a model failure ends this partial, never the session
            log.warning("partial decode failed: %s", exc)
        finally:
            if turn.partial_task is asyncio.current_task():
                turn.partial_task = None

    async def _final(self, turn: _Turn, guess: asyncio.Task[Any] | None, previous: asyncio.Task[Any] | None) -> None:
        try:
            transcript = await guess if guess is not None else None
            if previous is not None:
                await asyncio.wait([previous])          # finals leave in turn order
            if transcript is not None and (transcript.text or turn.partial_mark):
                end = turn.guess_end
                await self._emit(TurnResult(turn.id, True, transcript, *self._span(turn, end),
                                            offset_s=turn.start / SAMPLE_RATE, audio=turn.audio(end)))
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            await self._emit(err)
        except Exception as exc:
            log.warning("final decode failed: %s", exc)
            await self._emit(StreamError("asr_failed", f"Transcription of a turn failed: {exc}", status=500))
        finally:
            self._finals_done = turn.id + 1

    @staticmethod
    def _span(turn: _Turn, end: int) -> tuple[float, float]:
        """Speech span in stream seconds, from the VAD (sharper than Whisper's segment times)."""
        return round(turn.voiced_start / SAMPLE_RATE, 3), round(min(end, turn.voiced_end) / SAMPLE_RATE, 3)


def _forget(task: asyncio.Task[Any]) -> None:
    """Retrieve a dropped guess's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _samples(ms: float) -> int:
    return int(ms * SAMPLE_RATE / 1000)
