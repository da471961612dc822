"""Decode policy for live transcription, driven by turn events.

Partials whenever `partial_interval` more voiced audio has arrived (one in
flight, none while a speculative final is pending or the ASR is backed up,
none that fails Whisper's own quality signals: speechcore.sessions.quality),
the final decode started speculatively on `SpeechStopped` (dropped if speech
resumes, announced as a `Guess` while the turn is still open, reused as the
final if the turn ends), finals emitted in turn order.
Model-free: `transcribe` is an injected async callable.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine

import numpy as np
from pydantic import Field

from speechcore.audio import SAMPLE_RATE
from speechcore.errors import ApiError
from speechcore.schemas import TranscribeOptions, Transcript
from speechcore.sessions.events import (Error, Event, Final, Guess, Partial, SpeechStarted, SpeechStopped,
                                        TurnEnded, TurnEvent, error_event)
from speechcore.sessions.quality import MIN_PARTIAL_VOICED_S, within_audio, without_repeats, worth_showing
from speechcore.sessions.turns import TurnOptions, ms_to_samples, with_fields

log = logging.getLogger("speech.sessions")

Transcribe = Callable[[np.ndarray, TranscribeOptions], Awaitable[Transcript]]
Emit = Callable[[Event], Awaitable[None]]


class StreamOptions(TurnOptions):
    """Per-session knobs (query parameters or config message fields); defaults are the server's."""

    partial_interval: float = Field(1.0, ge=0.2, le=30.0, description="Voiced seconds between partials.")
    min_speech_ms: int = Field(160, ge=0, le=2000, description="Turns with less voiced audio are dropped.")
    language: str | None = Field(None, max_length=8, description="Language hint; else detected once per session.")
    word_timestamps: bool = False
    partial_beam_size: int = Field(1, ge=1, le=10)
    final_beam_size: int = Field(1, ge=1, le=10)

    def updated(self, fields: dict[str, Any]) -> "StreamOptions":
        """A copy with `fields` applied (unknown keys ignored); StreamError on a bad value."""
        return with_fields(self, fields)


@dataclass
class _Turn:
    id: int
    start: int                                  # stream sample where the turn's audio starts
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    voiced: int = 0                             # voiced samples so far
    voiced_start: int = 0                       # stream sample of the first voiced frame
    voiced_end: int = 0                         # stream sample after the last voiced frame
    partial_mark: int = 0                       # `voiced` when the last partial started
    partial_task: asyncio.Task[Any] | None = None
    guess: asyncio.Task[Any] | None = None           # speculative final decode
    guess_end: int = 0

    def audio(self, end: int | None = None) -> np.ndarray:
        joined = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        self.chunks = [joined]
        return joined if end is None else joined[: max(0, end - self.start)]

    @property
    def end(self) -> int:
        return self.start + self.samples


class TurnTranscriber:
    """Frames with their voiced verdict and turn events in; Partial / Final / Error events out."""

    def __init__(self, options: StreamOptions, transcribe: Transcribe, emit: Emit,
                 partials_allowed: Callable[[], bool] = lambda: True):
        self.options = options
        self.language = options.language
        self._transcribe, self._emit = transcribe, emit
        self._partials_allowed = partials_allowed     # False while the ASR is busy: finals go first
        self._ring: list[tuple[int, np.ndarray]] = []  # (start, frame) since the last turn, for pre-roll
        self._clock = 0
        self._turn: _Turn | None = None
        self._finals_done = 0                   # finals emitted (or dropped), in turn order
        self._last_final: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def push(self, frame: np.ndarray, voiced: bool, events: list[TurnEvent]) -> None:
        """One frame of audio, whether it was voiced, and the turn events it caused."""
        start = self._clock
        self._clock += frame.size
        turn = self._turn
        if turn is None:
            opened = next((e for e in events if isinstance(e, SpeechStarted)), None)
            if opened is None:
                self._remember(start, frame)
            else:
                self._open(opened, start, frame)
            return
        turn.chunks.append(frame)
        turn.samples += frame.size
        if voiced:
            turn.voiced += frame.size
            turn.voiced_end = self._clock
        for event in events:
            if isinstance(event, SpeechStarted):
                self._drop_guess(turn)
            elif isinstance(event, SpeechStopped) and turn.guess is None:
                turn.guess_end = self._clock
                turn.guess = self._spawn(self._decode(turn.audio(), final=True))
                self._spawn(self._announce_guess(turn, turn.guess))
            elif isinstance(event, TurnEnded):
                self._end_turn(turn)
                return
        if self._partial_due(turn):
            turn.partial_mark = turn.voiced
            turn.partial_task = self._spawn(self._partial(turn))

    def _partial_due(self, turn: _Turn) -> bool:
        """`partial_interval` more voice (and a second of it at least), none in flight, no final guess."""
        return (turn.voiced - turn.partial_mark >= self.options.partial_interval * SAMPLE_RATE
                and turn.voiced >= MIN_PARTIAL_VOICED_S * SAMPLE_RATE and turn.partial_task is None
                and turn.guess is None and self._partials_allowed())

    def end_of_input(self, tail: np.ndarray, events: list[TurnEvent]) -> None:
        """The stream ended: `tail` (less than a frame) joins the open turn, which becomes final."""
        turn = self._turn
        if turn is not None and any(isinstance(e, TurnEnded) for e in events):
            if tail.size:
                turn.chunks.append(tail)
                turn.samples += tail.size
                turn.voiced_end = turn.end
            self._end_turn(turn)

    async def finish(self) -> None:
        """Wait for every result."""
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

    # -- turns ---------------------------------------------------------------------------------
    def _remember(self, start: int, frame: np.ndarray) -> None:
        self._ring.append((start, frame))
        keep = ms_to_samples(self.options.pre_roll_ms) // frame.size
        del self._ring[: max(0, len(self._ring) - keep)]

    def _open(self, opened: SpeechStarted, start: int, frame: np.ndarray) -> None:
        pre_roll = [(s, f) for s, f in self._ring if s >= opened.turn_start]
        self._ring = []
        first = pre_roll[0][0] if pre_roll else start
        self._turn = _Turn(id=opened.turn, start=first, chunks=[f for _, f in pre_roll] + [frame],
                           samples=self._clock - first, voiced=frame.size, voiced_start=start,
                           voiced_end=self._clock)

    @staticmethod
    def _drop_partial(turn: _Turn) -> None:
        if turn.partial_task is not None:
            turn.partial_task.cancel()
            turn.partial_task = None

    @staticmethod
    def _drop_guess(turn: _Turn) -> None:
        if turn.guess is not None:
            turn.guess.cancel()
            turn.guess = None

    def _end_turn(self, turn: _Turn) -> None:
        self._turn = None
        self._drop_partial(turn)
        if turn.voiced < ms_to_samples(self.options.min_speech_ms):
            self._drop_guess(turn)
            self._last_final = self._spawn(self._final(turn, None, self._last_final))
            return
        if turn.guess is None:
            turn.guess_end = turn.end
            turn.guess = self._spawn(self._decode(turn.audio(), final=True))
        self._last_final = self._spawn(self._final(turn, turn.guess, self._last_final))

    # -- model calls and results -------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(_forget)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _decode(self, audio: np.ndarray, final: bool) -> Transcript:
        o = self.options
        opts = TranscribeOptions(language=self.language, word_timestamps=final and o.word_timestamps,
                                 beam_size=o.final_beam_size if final else o.partial_beam_size,
                                 fast_window=not final)   # partials are previews: speed first
        transcript = within_audio(await self._transcribe(audio, opts), audio.size / SAMPLE_RATE)
        if self.language is None and transcript.language:
            self.language = transcript.language          # detection costs a pass: do it once
        return transcript

    async def _announce_guess(self, turn: _Turn, guess: asyncio.Task[Any]) -> None:
        """`Guess` once the speculative decode is done, if its turn is still open and paused."""
        await asyncio.wait([guess])
        if self._turn is turn and turn.guess is guess and not guess.cancelled() and guess.exception() is None \
                and guess.result().text.strip() and self._finals_done == turn.id:
            await self._emit(Guess(turn.id, guess.result()))

    async def _partial(self, turn: _Turn) -> None:
        try:
            end = turn.end
            transcript = without_repeats(await self._decode(turn.audio(), final=False))
            if self._turn is turn and self._finals_done == turn.id and worth_showing(transcript):
                await self._emit(Partial(turn.id, transcript, *self._span(turn, end),
                                         offset_s=turn.start / SAMPLE_RATE))
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            await self._emit(error_event(err))
        except Exception as exc:  # a model failure ends this partial, never the session
            log.warning("partial decode failed: %r", exc)
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
                await self._emit(Final(turn.id, transcript, *self._span(turn, end),
                                       offset_s=turn.start / SAMPLE_RATE, audio=turn.audio(end)))
        except asyncio.CancelledError:
            raise
        except ApiError as err:
            await self._emit(error_event(err))
        except Exception as exc:  # logged here; the client gets a message without internals
            log.warning("final decode failed: %r", exc)
            await self._emit(Error("asr_failed", f"Transcription of turn {turn.id} failed; the session goes on."))
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
