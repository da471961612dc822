"""Turn detection from per-frame speech probabilities and levels (any VAD model).

A frame is voiced when the model's probability passes `vad_threshold` and its
RMS passes `volume_threshold`. A voiced frame opens a turn whose audio starts
`pre_roll_ms` before it (never before the previous turn's end). Inside a turn
the threshold drops by `HYSTERESIS` (as Silero's own `get_speech_timestamps`
does), `speculate_ms` of unvoiced frames is a pause (`SpeechStopped`), a voiced
frame after a pause is `SpeechStarted(resumed=True)`, and `silence_ms` of
unvoiced frames or `max_turn_s` of turn audio ends the turn (`TurnEnded`).
The clock is the audio: positions are counted in 16 kHz samples.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from speechcore.audio import SAMPLE_RATE
from speechcore.sessions.events import SpeechStarted, SpeechStopped, TurnEnded, TurnEvent

HYSTERESIS = 0.15


class TurnOptions(BaseModel):
    """What decides where turns start, pause and end."""
    model_config = ConfigDict(extra="ignore")

    silence_ms: int = Field(300, ge=64, le=5000, description="Silence that ends a turn.")
    volume_threshold: float = Field(0.01, ge=0.0, le=1.0, description="RMS gate under which a frame is silence.")
    vad_threshold: float = Field(0.5, ge=0.05, le=0.95, description="Speech probability that opens a turn.")
    speculate_ms: int = Field(160, ge=0, le=5000, description="Silence after which speech counts as stopped "
                              "(and the final decode starts early).")
    pre_roll_ms: int = Field(256, ge=0, le=1000, description="Audio kept before the first voiced frame.")
    max_turn_s: float = Field(25.0, ge=2.0, le=29.0, description="A longer turn is finalised (Whisper's window).")


class TurnDetector:
    """Per-frame verdicts in, turn events out. One per stream."""

    def __init__(self, options: TurnOptions):
        self.options = options
        self.clock = 0                 # samples seen
        self.voiced = False            # the last frame's verdict
        self.turn: int | None = None   # id of the open turn
        self._next_turn = 0
        self._last_end = 0             # where the previous turn ended
        self._turn_start = 0
        self._voiced = 0               # voiced samples in the open turn
        self._silence = 0              # unvoiced samples since its last voiced frame
        self._stopped = False          # SpeechStopped sent for this pause

    def step(self, prob: float, level: float, samples: int) -> list[TurnEvent]:
        """Advance by one frame of `samples` with the model's speech probability and the frame's RMS."""
        o = self.options
        start, self.clock = self.clock, self.clock + samples
        threshold = o.vad_threshold if self.turn is None else o.vad_threshold - HYSTERESIS
        self.voiced = prob >= threshold and level >= o.volume_threshold
        if self.turn is None:
            return [self._open(start, samples)] if self.voiced else []
        events: list[TurnEvent] = []
        if self.voiced:
            self._voiced += samples
            self._silence = 0
            if self._stopped:
                self._stopped = False
                events.append(SpeechStarted(self.turn, start, self._turn_start, resumed=True))
        else:
            self._silence += samples
            if not self._stopped and self._silence >= max(1, ms_to_samples(min(o.speculate_ms, o.silence_ms))):
                self._stopped = True
                events.append(SpeechStopped(self.turn, self.clock))
        if self._silence >= ms_to_samples(o.silence_ms):
            events.append(self._end("silence", self.clock))
        elif self.clock - self._turn_start >= o.max_turn_s * SAMPLE_RATE:
            events.append(self._end("max_turn", self.clock))
        return events

    def finish(self, tail_samples: int = 0) -> list[TurnEvent]:
        """End of input; `tail_samples` (less than a frame) end the open turn too."""
        self.clock += tail_samples
        return [self._end("end_of_input", self.clock)] if self.turn is not None else []

    def _open(self, onset: int, frame: int) -> SpeechStarted:
        self.turn, self._next_turn = self._next_turn, self._next_turn + 1
        pre_roll = ms_to_samples(self.options.pre_roll_ms) // frame * frame      # whole frames
        self._turn_start = max(self._last_end, onset - pre_roll)
        self._voiced, self._silence, self._stopped = self.clock - onset, 0, False
        return SpeechStarted(self.turn, onset, self._turn_start)

    def commit(self) -> list[TurnEvent]:
        """The client says the turn is over: end the open turn now (the stream goes on)."""
        return [self._end("commit", self.clock)] if self.turn is not None else []

    def _end(self, reason: Literal["silence", "max_turn", "end_of_input", "commit"], at: int) -> TurnEnded:
        assert self.turn is not None
        event = TurnEnded(self.turn, at, reason=reason, voiced_samples=self._voiced)
        self.turn, self._last_end = None, at
        return event


def ms_to_samples(ms: float) -> int:
    return int(ms * SAMPLE_RATE / 1000)
