"""The event vocabulary of live audio sessions (transcription now, TTS and voice chat next).

Sessions emit these; a serializer per WebSocket protocol decides which ones its
wire format carries and how. Every event says what happens to it when the user
barges in (`Interrupted`), as pipecat's frames do: `KEEP` events describe the
user's side or the session itself and always reach the client; `DROP` events
are agent output still queued when the interruption arrives, and are discarded
(the client is told to flush what it already has).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from speechcore.errors import ApiError
from speechcore.schemas import Transcript

OnInterrupt = Literal["keep", "drop"]
KEEP: OnInterrupt = "keep"
DROP: OnInterrupt = "drop"


@dataclass(frozen=True)
class Event:
    on_interrupt: ClassVar[OnInterrupt] = KEEP


# -- client -> session --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AudioIn(Event):
    """Audio from the client, already 16 kHz mono float32 (serializers decode the wire format)."""
    audio: np.ndarray


@dataclass(frozen=True)
class Configure(Event):
    """Session options from a config message or the query string (validated by the session)."""
    fields: dict[str, Any]


@dataclass(frozen=True)
class TextIn(Event):
    """Text typed by the user: a whole turn that bypasses the ASR (and interrupts the agent at once)."""
    text: str


@dataclass(frozen=True)
class Commit(Event):
    """The user's turn is over now (push-to-talk release, or `commit` strategy `manual`)."""


@dataclass(frozen=True)
class EndOfInput(Event):
    """The client has no more input: flush what is open, send every result, then close."""


# -- turn detection -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TurnEvent(Event):
    turn: int
    sample: int                        # position in the stream, 16 kHz samples

    @property
    def at_s(self) -> float:
        return self.sample / 16000


@dataclass(frozen=True)
class SpeechStarted(TurnEvent):
    """Voice began (a new turn) or resumed after a `SpeechStopped` (the same turn): barge-in's cue."""
    turn_start: int = 0                # where the turn's audio starts (onset minus its pre-roll)
    resumed: bool = False


@dataclass(frozen=True)
class SpeechStopped(TurnEvent):
    """Voice paused long enough that the turn may be over: time to start speculative work."""


@dataclass(frozen=True)
class TurnEnded(TurnEvent):
    """The turn is over: `silence` after its voice, `max_turn` reached, or `end_of_input`."""
    reason: Literal["silence", "max_turn", "end_of_input", "commit"] = "silence"
    voiced_samples: int = 0


# -- transcription --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transcription(Event):
    """A transcript of one turn; times are seconds from the start of the stream."""
    turn: int
    transcript: Transcript
    start_s: float
    end_s: float
    offset_s: float = 0.0             # where the decoded audio starts (transcript times are relative to it)
    is_final: ClassVar[bool] = False


@dataclass(frozen=True)
class Partial(Transcription):
    """A preview of the open turn; a later partial or the final replaces it."""


@dataclass(frozen=True, eq=False)
class Final(Transcription):
    """The turn's transcript, in turn order; `audio` is the turn's audio (for voice profiling)."""
    audio: np.ndarray | None = None
    is_final: ClassVar[bool] = True


@dataclass(frozen=True)
class Guess(Event):
    """The open turn's likely final, decoded at a pause (`SpeechStopped`) before the turn has ended.

    Not for clients (no transport renders it): it lets a conversation start its
    answer while the silence that ends the turn is still running. The `Final`
    that follows for the same turn carries the same transcript unless speech resumed.
    """
    turn: int
    transcript: Transcript


@dataclass(frozen=True)
class VoiceProfile(Event):
    """Voice properties (e.g. gender probabilities) of a finished turn, after its final."""
    turn: int
    properties: dict[str, Any]


# -- agent output (voice chat) --------------------------------------------------------------------
@dataclass(frozen=True)
class AgentText(Event):
    """Text the agent is saying; stale once the user interrupts."""
    text: str
    on_interrupt: ClassVar[OnInterrupt] = DROP


@dataclass(frozen=True, eq=False)
class AudioOut(Event):
    """Synthesized audio for the client (16-bit PCM or float32 at `sample_rate`)."""
    audio: np.ndarray
    sample_rate: int
    on_interrupt: ClassVar[OnInterrupt] = DROP


@dataclass(frozen=True)
class Interrupted(Event):
    """The user barged in: queued agent output was dropped; the client flushes its playback.

    `heard` is the part of the agent's answer the user heard (what the history keeps)."""
    heard: str = ""


@dataclass(frozen=True)
class Thinking(Event):
    """The agent took the turn and the LLM is generating (`followup`: unprompted, after a silence)."""
    language: str | None = None
    followup: bool = False


@dataclass(frozen=True)
class AgentEnd(Event):
    """The agent's text for this turn is complete (or was cut short: `interrupted`); audio may still follow."""
    text: str = ""
    interrupted: bool = False


@dataclass(frozen=True)
class Latency(Event):
    """How long one step took: `asr` (end of speech -> final), `llm` (request -> first token),
    `tts_first` (first clause -> its first audio), `total` (end of user turn -> first agent audio)."""
    step: str
    ms: float


@dataclass(frozen=True)
class StateChanged(Event):
    """The conversation's state: listening, user_speaking, thinking or speaking."""
    state: str


# -- errors -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Error(Event):
    """Something the client should know; `message` is for people and never carries internals."""
    code: str
    message: str
    close_code: int | None = None     # set: the session ends with this WebSocket close code
    source: str | None = None         # which service failed in a conversation: asr, llm or tts


class StreamError(ApiError):
    """A problem with one live session. `close_code` set: the session ends with that WebSocket code."""

    def __init__(self, code: str, message: str, close_code: int | None = None, status: int = 400):
        super().__init__(status=status, code=code, message=message)
        self.close_code = close_code

    def event(self) -> Error:
        return Error(self.code, self.message, self.close_code)


def error_event(err: ApiError) -> Error:
    """An ApiError (ours, with a message written for clients) as an event."""
    return Error(err.code, err.message, getattr(err, "close_code", None))
