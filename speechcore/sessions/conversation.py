"""Voice conversations, Ray-free and transport-free: the engine behind /ws/voice-chat, /v1/voice/ws and WebRTC.

Contract (what transports and services build on)
-------------------------------------------------
`Conversation(config, recognizer, llm, tts, emit, clock=None, voice_for=None)`:

- Input, through `await conv.handle(event)`: `AudioIn` (16 kHz mono float32),
  `TextIn` (a whole user turn, interrupts the agent at once), `Commit` (the
  user's turn is over now), `Configure` (new `ConversationConfig` fields),
  `EndOfInput` (same as `await conv.finish()`). `await conv.close()` when the
  client is gone: every task the conversation started is cancelled and awaited.
- Output, through `emit(event)` (events.py): the recognizer's `SpeechStarted`,
  `SpeechStopped`, `TurnEnded`, `Partial`, `Final`; then `StateChanged`
  (listening, user_speaking, thinking, speaking), `Thinking`, `AgentText`
  (each LLM delta), `AgentEnd` (text complete, or cut short), `AudioOut`
  (float32 at `config.sample_rate`, frames of `config.frame_ms`),
  `Interrupted` (barge-in: the client drops the audio it has not played),
  `Latency` (`asr`, `llm`, `tts_first`, `total`, in ms), `Error` with
  `source` asr | llm | tts (the conversation goes on without that answer).
  Events are emitted in order from one task at a time per reply; after
  `Interrupted` no agent output of the interrupted reply follows.
- Services are injected as small Protocols so in-server deployments, external
  bridges and test fakes are interchangeable: a `Recognizer` (made by a
  factory given the conversation's emit: audio in, turn and transcript events
  out, e.g. `LiveSession`), a `ChatModel` (messages -> text deltas) and a
  `Synthesizer` (text -> speech chunks at any rate; resampled here). `tts`
  may be None: text-only answers. `voice_for(language)` picks the voice of a
  turn's language (a speaker collection); else `config.voice` is used.
- Time comes from a `Clock` (`now`, `sleep`), so tests drive it by hand.

Behaviour
---------
- A user turn is answered when its `Final` arrives (`commit="vad"`) or on
  `Commit` (`commit="manual"`: finals are gathered until then).
- Speculation: a recognizer's `Guess` (the open turn decoded at a pause)
  starts the answer at once, held back (LLM and first TTS audio run, nothing
  is sent) while the silence that ends the turn runs. The turn's `Final` with
  the same text releases it; speech resuming, a different final, a dropped
  turn or any other input cancels it. The user sees no difference but time. Its language
  is a `[xx]` prefix of the text, else the ASR's detected language, else
  `config.language`; the LLM is told to answer in it and the voice follows it.
- Reading ahead: while the user speaks, each `Partial` (one at a time) has a
  ChatModel that `Prefills` (the server's llama.cpp) read the prompt the turn
  will likely have, so the answer's request finds all but its last words read;
  the answer waits up to PREFILL_WAIT_S for a read still running.
- The answer streams: LLM deltas are sent as they come, cut into clauses
  (the first one early, at a comma) and each clause is synthesized as soon as
  it is complete, so the first audio does not wait for the whole answer.
- Audio is paced: the engine sends at most `playback_lead_ms` ahead of the
  client's real-time playback (modelled from the clock), so a barge-in has
  little to take back and the engine knows what the user heard.
- Barge-in (echo policy): speech that starts while the agent thinks or
  speaks interrupts it once it has lasted `barge_in_min_ms` of audio without
  a pause (a short burst, e.g. the agent's own echo or a cough, does not;
  its transcript is not answered). Interruption cancels generation and
  synthesis at once, sends nothing more, and the history keeps only the text
  the user heard (whole clauses played, plus the played share of the current
  one, by words). `barge_in=False`: half duplex, user speech while the agent
  talks is ignored.
- Proactive follow-ups: `followup_after_s` of silence after an answer (0 =
  off) makes the agent speak again, at most `followup_max` times in a row.
- History: user and assistant messages, oldest dropped first to stay within
  `history_max_tokens` (estimated, 4 characters a token); the system prompt
  is always sent.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Protocol, cast, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from speechcore.audio import resample
from speechcore.errors import ApiError
from speechcore.languages import NAMES
from speechcore.schemas import ChatMessage, Speech
from speechcore.sessions.events import (AgentEnd, AgentText, AudioIn, AudioOut, Commit, Configure, EndOfInput, Error,
                                        Event, Final, Guess, Interrupted, Latency, Partial, SpeechStarted,
                                        SpeechStopped, StateChanged, TextIn, Thinking, TurnEnded)
from speechcore.sessions.turns import ms_to_samples, with_fields

log = logging.getLogger("speech.sessions")

Emit = Callable[[Event], Awaitable[None]]
State = Literal["listening", "user_speaking", "thinking", "speaking"]
LISTENING: State = "listening"
USER_SPEAKING: State = "user_speaking"
THINKING: State = "thinking"
SPEAKING: State = "speaking"

DEFAULT_SYSTEM_PROMPT = ("You are a helpful voice assistant. Your answers are spoken aloud: keep them short "
                         "(one to three sentences), conversational, without lists, markup or emoji.")
FOLLOWUP_PROMPT = ("The user has said nothing for {seconds:g} seconds. Say one short sentence to re-engage them: "
                   "continue the topic or ask whether they are still there.")
_PREFIX = re.compile(r"^\s*\[([A-Za-z]{2,3})\]\s*")
_SENTENCE_END = re.compile(r"[.!?。！？…]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:，；：—–]\s")
_SENTENCE_END_NOW = re.compile(r"(?<![\d\s])[.!?。！？…]+[\"')\]]*$")   # ends the text so far, not after a digit
_CLAUSE_END_NOW = re.compile(r"(?<![\d\s])[,;:，；：—–]$")
FIRST_CLAUSE_CHARS = 12          # the first clause may end at a comma once it is this long (first audio early)
MAX_CLAUSE_CHARS = 200           # a clause without punctuation is cut at a space beyond this
SPECULATE_MS = 160               # live transcription's pause that starts the final decode early
DECODE_BUDGET_MS = 200           # a short turn's final decode on the CPU profile (Moonshine base, 2 cores)
MIN_SPECULATE_MS = 96            # three VAD frames: shorter pauses are common inside a sentence
PREFILL_WAIT_S = 0.3             # an answer waits this long at most for the prompt read ahead of it


# -- the services --------------------------------------------------------------------------------
class Recognizer(Protocol):
    """Audio in; SpeechStarted / SpeechStopped / TurnEnded / Partial / Final / Error through its emit."""

    @property
    def position(self) -> int:
        """16 kHz samples through turn detection (the clock of its turn events)."""

    async def feed(self, audio: np.ndarray) -> None: ...

    async def commit(self) -> None:
        """End the open turn now and return once its final (if any) was emitted."""

    async def finish(self) -> None:
        """End of input: the open turn becomes final; return once every result was emitted."""

    async def close(self) -> None: ...


RecognizerFactory = Callable[[Emit], Recognizer]


@dataclass(frozen=True)
class ChatOptions:
    max_tokens: int = 200
    temperature: float = 0.7


class ChatModel(Protocol):
    def stream(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[str]:
        """Text deltas as the model generates them; ApiError's message reaches the client."""


@runtime_checkable
class Prefills(Protocol):
    """A ChatModel that can read a prompt ahead of the request (llama.cpp keeps what it read)."""

    async def prefill(self, messages: list[ChatMessage]) -> None:
        """Read `messages` as a prompt now, if the model has room; no answer."""


class Synthesizer(Protocol):
    def stream(self, text: str, voice: str | None, language: str | None) -> AsyncIterator[Speech]:
        """Speech chunks for `text` as they are synthesized (any sample rate)."""


VoiceFor = Callable[[str | None], str | None]


class Clock(Protocol):
    def now(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# -- configuration -----------------------------------------------------------------------------------
class ConversationConfig(BaseModel):
    """A conversation's options (a config message's fields; unknown keys are the transport's business)."""
    model_config = ConfigDict(extra="ignore")

    language: str | None = Field(None, max_length=8, description="Default language of the user and the "
                                 "agent; None: detected from the user's speech.")
    voice: str | None = Field(None, max_length=200, description="TTS voice when no collection routes one.")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, min_length=1, max_length=8000)
    vad_threshold: float = Field(0.5, ge=0.05, le=0.95, description="Speech probability that opens a turn.")
    silence_ms: int = Field(500, ge=64, le=5000, description="Silence that ends a user turn.")
    read_ahead: bool = Field(True, description="While the user speaks, the server's LLM reads the turn's likely "
                             "prompt from partial transcripts (its first token comes sooner).")
    speculate_ms: int | None = Field(None, ge=0, le=5000, description="Silence after which the turn's final "
                                     "decode (and a held answer) starts early; None: `speculative_pause(silence_ms)`.")
    min_speech_ms: int = Field(160, ge=0, le=2000, description="Shorter turns are ignored.")
    commit: Literal["vad", "manual"] = Field("vad", description="vad: answer each turn when its silence ends it; "
                                             "manual: answer on the client's commit.")
    barge_in: bool = Field(True, description="User speech interrupts the agent (False: half duplex).")
    barge_in_min_ms: int = Field(300, ge=0, le=3000, description="Speech that long, without a pause, "
                                 "interrupts the agent (shorter bursts are taken for echo or noise).")
    followup_after_s: float = Field(0.0, ge=0.0, le=600.0, description="Silence after an answer before the "
                                    "agent speaks again; 0: never.")
    followup_max: int = Field(1, ge=0, le=10, description="Follow-ups in a row without a user turn.")
    history_max_tokens: int = Field(2000, ge=100, le=32000, description="History kept for the LLM.")
    max_tokens: int = Field(200, ge=1, le=4096, description="Longest answer, in LLM tokens.")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    sample_rate: int = Field(24000, ge=8000, le=48000, description="Rate of the agent's audio.")
    frame_ms: int = Field(100, ge=10, le=1000, description="Agent audio per AudioOut event.")
    playback_lead_ms: int = Field(400, ge=0, le=10000, description="Audio sent ahead of the client's playback "
                                  "(what a barge-in cannot take back).")

    def turn_fields(self) -> dict[str, Any]:
        """The options a recognizer's turn detection takes from this config (StreamOptions names)."""
        speculate = self.speculate_ms if self.speculate_ms is not None else speculative_pause(self.silence_ms)
        return {"vad_threshold": self.vad_threshold, "silence_ms": self.silence_ms,
                "min_speech_ms": self.min_speech_ms, "speculate_ms": speculate}

    def updated(self, fields: dict[str, Any]) -> ConversationConfig:
        """A copy with `fields` applied (None and unknown keys ignored); StreamError (1003) on a bad value."""
        return with_fields(self, fields)


# -- pure helpers ----------------------------------------------------------------------------------
def speculative_pause(silence_ms: int) -> int:
    """The pause that starts a turn's final decode: live transcription's 160 ms, or earlier when the turn's
    silence leaves less than DECODE_BUDGET_MS after it, so the guess is ready about when the turn ends;
    never under MIN_SPECULATE_MS (each shorter pause inside a sentence would cost a decode)."""
    return max(MIN_SPECULATE_MS, min(SPECULATE_MS, silence_ms - DECODE_BUDGET_MS))


def approx_tokens(text: str) -> int:
    return len(text) // 4 + 1


def route_language(text: str, detected: str | None, default: str | None) -> tuple[str, str | None]:
    """The text without a `[xx]` prefix, and the turn's language: the prefix, else detected, else default."""
    match = _PREFIX.match(text)
    if match:
        return text[match.end():], match.group(1).lower()
    return text, detected or default


def language_instruction(language: str | None) -> str:
    if not language:
        return ""
    name = NAMES.get(language, language)
    return f" Always answer in {name.title()} (language code '{language}')."


def next_clause(buffer: str, first: bool) -> tuple[str | None, str]:
    """The first complete clause of streamed text and the rest (None: wait for more text).

    A clause ends after a sentence's final punctuation and a space; the first
    clause of an answer may end at a comma (first audio sooner), and need not
    wait for the next token's space when the punctuation ends the text so far
    (not after a digit: "3," may go on as "3,000"); text without punctuation
    is cut at a space after MAX_CLAUSE_CHARS.
    """
    ends = [m.end() for m in (_SENTENCE_END.search(buffer),) if m]
    if first:
        ends += [m.end() for m in _CLAUSE_END.finditer(buffer) if m.end() >= FIRST_CLAUSE_CHARS][:1]
        ends += [m.end() for m in (_SENTENCE_END_NOW.search(buffer),) if m]
        ends += [m.end() for m in (_CLAUSE_END_NOW.search(buffer),) if m and m.end() >= FIRST_CLAUSE_CHARS]
    if not ends and len(buffer) > MAX_CLAUSE_CHARS:
        space = buffer.rfind(" ", 0, MAX_CLAUSE_CHARS)
        ends = [space + 1 if space > 0 else MAX_CLAUSE_CHARS]
    if not ends:
        return None, buffer
    cut = min(ends)
    return buffer[:cut].strip(), buffer[cut:]


def with_user(history: list[ChatMessage], text: str) -> list[ChatMessage]:
    """The history after a user turn: an unanswered user message and this one become one message."""
    last = history[-1] if history else None
    if last is not None and last.role == "user":
        return [*history[:-1], ChatMessage("user", f"{last.content} {text}")]
    return [*history, ChatMessage("user", text)]


def speakable(clause: str) -> bool:
    return any(c.isalnum() for c in clause)


def bounded_history(history: list[ChatMessage], max_tokens: int) -> list[ChatMessage]:
    """The newest messages whose estimated tokens fit `max_tokens` (at least the newest one)."""
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        used += approx_tokens(message.content)
        if kept and used > max_tokens:
            break
        kept.append(message)
    return kept[::-1]


@dataclass
class _Clause:
    text: str
    seconds: float = 0.0          # audio synthesized for it so far
    complete: bool = False        # synthesis finished


class Playback:
    """Where the client's playback is: frames play back to back, in real time, from when they are sent."""

    def __init__(self) -> None:
        self.ends_at: float | None = None
        self._spans: list[tuple[float, float, int]] = []     # (start, seconds, clause index)

    def add(self, now: float, seconds: float, clause: int) -> None:
        start = max(now, self.ends_at or now)
        self._spans.append((start, seconds, clause))
        self.ends_at = start + seconds

    def lead(self, now: float) -> float:
        """Seconds of sent audio not yet played."""
        return max(0.0, (self.ends_at or now) - now)

    def heard(self, now: float) -> dict[int, float]:
        """Seconds played per clause."""
        out: dict[int, float] = {}
        for start, seconds, clause in self._spans:
            out[clause] = out.get(clause, 0.0) + min(seconds, max(0.0, now - start))
        return out


def heard_text(clauses: list[_Clause], heard: dict[int, float]) -> str:
    """Whole clauses played, then the played share (by words) of the first one cut short."""
    said: list[str] = []
    for i, clause in enumerate(clauses):
        played = heard.get(i, 0.0)
        if clause.complete and clause.seconds and played >= clause.seconds - 1e-6:
            said.append(clause.text)
            continue
        words = clause.text.split()
        share = played / clause.seconds if clause.seconds else 0.0
        said.extend(words[: int(len(words) * min(1.0, share))])
        break
    return " ".join(said)


# -- one answer ------------------------------------------------------------------------------------
@dataclass
class _Guess:
    turn: int
    text: str
    language: str | None
    reply: _Reply


@dataclass
class _Reply:
    language: str | None
    voice: str | None
    followup: bool
    text: str = ""
    ended: bool = False                       # AgentEnd sent
    clauses: list[_Clause] = field(default_factory=list)
    playback: Playback = field(default_factory=Playback)
    audio_sent: bool = False
    tts_failed: bool = False
    task: asyncio.Task[None] | None = None
    messages: list[ChatMessage] = field(default_factory=list)
    held: list[Event] | None = None           # a speculative reply's events, kept until its turn is confirmed
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def heard(self, now: float) -> str:
        """What the user got: the played audio, or the shown text when there was no audio."""
        if not self.audio_sent:
            return self.text.strip()
        return heard_text(self.clauses, self.playback.heard(now))


# -- the engine ------------------------------------------------------------------------------------
class Conversation:
    """One voice conversation: see the module docstring for the contract."""

    def __init__(self, config: ConversationConfig, recognizer: RecognizerFactory, llm: ChatModel,
                 tts: Synthesizer | None, emit: Emit, clock: Clock | None = None,
                 voice_for: VoiceFor | None = None):
        self.config = config
        self.llm, self.tts, self._emit = llm, tts, emit
        self.clock: Clock = clock or SystemClock()
        self.voice_for = voice_for
        self.state: State = LISTENING
        self.history: list[ChatMessage] = []
        self.language = config.language            # the conversation's language so far
        self.recognizer = recognizer(self._on_recognized)
        self._reply: _Reply | None = None
        self._guess: _Guess | None = None             # an answer started on a Guess, not yet confirmed
        self._candidate: SpeechStarted | None = None   # speech during the agent's turn, not yet a barge-in
        self._turn_ended_at: float | None = None
        self._pending: list[str] = []                 # finals gathered for a manual commit
        self._followup: asyncio.Task[None] | None = None
        self._followups = 0
        self._prefill: asyncio.Task[None] | None = None  # the open turn's prompt, read ahead from a partial
        self._closed = False

    # -- input ----------------------------------------------------------------------------------------
    async def handle(self, event: Event) -> None:
        if self._closed:
            return
        if isinstance(event, AudioIn):
            await self.recognizer.feed(event.audio)
            await self._check_barge_in()
        elif isinstance(event, TextIn):
            self._turn_ended_at = self.clock.now()
            await self._user_turn(*route_language(event.text.strip(), None, self.language))
        elif isinstance(event, Commit):
            await self.commit()
        elif isinstance(event, Configure):
            self.config = self.config.updated(event.fields)
        elif isinstance(event, EndOfInput):
            await self.finish()

    async def commit(self) -> None:
        """The user's turn is over: its final (and, when manual, every gathered final) is answered."""
        self._turn_ended_at = self.clock.now()
        await self.recognizer.commit()
        if self._pending:
            text, self._pending = " ".join(self._pending), []
            await self._user_turn(*route_language(text, None, self.language))

    async def finish(self) -> None:
        """End of input: transcripts still due are sent, then everything stops (no new answer)."""
        await self.recognizer.finish()
        await self.close()

    async def close(self) -> None:
        """The client is gone: cancel and await everything this conversation started."""
        self._closed = True
        replies = [r for r in (self._reply, self._guess.reply if self._guess else None) if r is not None]
        tasks = [t for t in (self._followup, self._prefill, *(r.task for r in replies)) if t is not None]
        self._reply, self._guess = None, None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.recognizer.close()

    # -- recognizer output ------------------------------------------------------------------------------
    async def _on_recognized(self, event: Event) -> None:
        if self._closed:
            return
        if isinstance(event, Guess):
            await self._on_guess(event)
            return
        if isinstance(event, Error) and event.source is None:
            event = Error(event.code, event.message, event.close_code, source="asr")
        await self._emit(event)
        if isinstance(event, SpeechStarted):
            self._cancel_followup()
            await self._drop_guess()
            if self._reply is None:
                await self._set_state(USER_SPEAKING)
            elif self.config.barge_in:
                self._candidate = self._candidate or event
                await self._check_barge_in()
        elif isinstance(event, SpeechStopped):
            self._candidate = None
        elif isinstance(event, TurnEnded):
            self._candidate = None
            self._turn_ended_at = self.clock.now()
            if event.voiced_samples < ms_to_samples(self.config.min_speech_ms):
                await self._drop_guess()                 # too short: the recognizer sends no final
            if self._reply is None and self.state == USER_SPEAKING:
                await self._set_state(LISTENING)
        elif isinstance(event, Partial):
            self._read_ahead(event)
        elif isinstance(event, Final):
            await self._on_final(event)

    def _read_ahead(self, event: Partial) -> None:
        """While the user speaks, the LLM reads the prompt the turn will likely have (history and the
        partial transcript), so the answer's request finds most of it read. One at a time."""
        busy = self._reply is not None or self._guess is not None or \
            (self._prefill is not None and not self._prefill.done())
        if busy or not self.config.read_ahead or self.config.commit != "vad" or not isinstance(self.llm, Prefills):
            return
        text, language = route_language(event.transcript.text.strip(), event.transcript.language, self.language)
        if text.strip():
            messages = self._messages(language or self.language, False, with_user(self.history, text))
            self._prefill = asyncio.ensure_future(self._prefilled(self.llm, messages))

    @staticmethod
    async def _prefilled(llm: Prefills, messages: list[ChatMessage]) -> None:
        try:
            await llm.prefill(messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:        # an optimisation: the answer's own request reads the prompt anyway
            log.debug("reading ahead failed: %r", exc)

    async def _on_final(self, event: Final) -> None:
        if self._reply is not None:
            return                                  # heard while the agent talked, no barge-in: not answered
        text, language = route_language(event.transcript.text.strip(), event.transcript.language, self.language)
        if not text.strip():
            return
        if self._turn_ended_at is not None:
            await self._emit(Latency("asr", self._ms_since(self._turn_ended_at)))
        if self.config.commit == "manual":
            self._pending.append(text if language == self.language else f"[{language}] {text}")
            return
        await self._user_turn(text, language, turn=event.turn)

    async def _on_guess(self, event: Guess) -> None:
        """Start answering the open turn's likely final; nothing is sent until its Final confirms it."""
        if self._reply is not None or self.config.commit != "vad" or self._closed:
            return
        text, language = route_language(event.transcript.text.strip(), event.transcript.language, self.language)
        if not text.strip():
            return
        await self._drop_guess()
        reply = self._new_reply(language or self.language, False, with_user(self.history, text), held=True)
        self._guess = _Guess(event.turn, text, language, reply)

    async def _drop_guess(self) -> None:
        guess, self._guess = self._guess, None
        if guess is not None and guess.reply.task is not None:
            guess.reply.task.cancel()
            await asyncio.gather(guess.reply.task, return_exceptions=True)

    async def _confirmed_guess(self, turn: int | None, text: str, language: str | None) -> _Reply | None:
        """The speculative answer when this final is the one it guessed (else it is cancelled)."""
        guess = self._guess
        if guess is not None and guess.turn == turn and guess.text == text and guess.language == language:
            self._guess = None
            return guess.reply
        await self._drop_guess()
        return None

    # -- turns ------------------------------------------------------------------------------------------
    async def _user_turn(self, text: str, language: str | None, turn: int | None = None) -> None:
        if not text.strip():
            return
        guessed = await self._confirmed_guess(turn, text, language)
        if self._reply is not None:
            await self._interrupt()
        self._cancel_followup()
        self._followups = 0
        self.language = language or self.language
        self.history = with_user(self.history, text)
        if guessed is None:
            self._start_reply(followup=False)
            return
        self._reply = guessed
        await self._release(guessed)

    def _start_reply(self, followup: bool) -> None:
        self._reply = self._new_reply(self.language, followup, self.history)

    def _new_reply(self, language: str | None, followup: bool, history: list[ChatMessage],
                   held: bool = False) -> _Reply:
        voice = self.voice_for(language) if self.voice_for else None
        reply = _Reply(language, voice or self.config.voice, followup, held=[] if held else None)
        reply.messages = self._messages(language, followup, history)
        if not held:
            reply.released.set()
        reply.task = asyncio.ensure_future(self._run_reply(reply))
        return reply

    async def _release(self, reply: _Reply) -> None:
        """A confirmed speculative answer: what it held is sent in order, then it talks directly."""
        while reply.held:
            event = reply.held.pop(0)
            if isinstance(event, StateChanged):
                await self._set_state(cast(State, event.state))
            else:
                await self._emit(event)
        reply.held = None
        reply.released.set()

    async def _check_barge_in(self) -> None:
        start = self._candidate
        if start is not None and self._reply is not None and \
                self.recognizer.position - start.sample >= ms_to_samples(self.config.barge_in_min_ms):
            await self._interrupt()

    async def _interrupt(self) -> None:
        """Barge-in: stop generation and synthesis now; keep in the history what the user heard."""
        reply, self._reply, self._candidate = self._reply, None, None
        if reply is None:
            return
        heard = reply.heard(self.clock.now())
        if reply.task is not None:
            reply.task.cancel()
            await asyncio.gather(reply.task, return_exceptions=True)
        self._remember(heard)
        if not reply.ended:
            await self._emit(AgentEnd(heard, interrupted=True))
        await self._emit(Interrupted(heard))
        await self._set_state(USER_SPEAKING)

    def _remember(self, text: str) -> None:
        if text:
            self.history.append(ChatMessage("assistant", text))
        self.history = bounded_history(self.history, self.config.history_max_tokens)

    # -- follow-ups ---------------------------------------------------------------------------------------
    def _schedule_followup(self) -> None:
        if self.config.followup_after_s > 0 and self._followups < self.config.followup_max and not self._closed:
            self._followup = asyncio.ensure_future(self._followup_after(self.config.followup_after_s))

    def _cancel_followup(self) -> None:
        if self._followup is not None and self._followup is not asyncio.current_task():
            self._followup.cancel()
        self._followup = None

    async def _followup_after(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        if self._reply is None and self.state == LISTENING and not self._closed:
            self._followup = None
            self._followups += 1
            self._start_reply(followup=True)

    # -- one answer -------------------------------------------------------------------------------------
    def _messages(self, language: str | None, followup: bool, history: list[ChatMessage]) -> list[ChatMessage]:
        system = ChatMessage("system", self.config.system_prompt + language_instruction(language))
        extra = [ChatMessage("system", FOLLOWUP_PROMPT.format(seconds=self.config.followup_after_s))] \
            if followup else []
        budget = self.config.history_max_tokens - approx_tokens(system.content)
        return [system, *bounded_history(history, budget), *extra]

    async def _say(self, reply: _Reply, event: Event) -> None:
        """One event of a reply: sent, or held while the reply is speculative."""
        if reply.held is not None:
            reply.held.append(event)
        else:
            await self._emit(event)

    async def _reply_state(self, reply: _Reply, state: State) -> None:
        if reply.held is not None:
            reply.held.append(StateChanged(state))
        else:
            await self._set_state(state)

    async def _run_reply(self, reply: _Reply) -> None:
        await self._reply_state(reply, THINKING)
        await self._say(reply, Thinking(reply.language, reply.followup))
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.ensure_future(self._speak(reply, clauses)) if self.tts is not None else None
        try:
            await self._generate(reply, clauses)
            clauses.put_nowait(None)
            if speaker is not None:
                await speaker
            await reply.released.wait()
            await self.clock.sleep(reply.playback.lead(self.clock.now()))     # until the client played it all
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
                await asyncio.gather(speaker, return_exceptions=True)
        if self._reply is reply:
            self._reply = None
            self._remember(reply.text.strip())
            await self._set_state(LISTENING)
            self._schedule_followup()

    async def _generate(self, reply: _Reply, clauses: asyncio.Queue[str | None]) -> None:
        """LLM deltas -> AgentText events and complete clauses for the speaker; AgentEnd at the end."""
        started, first_token = self.clock.now(), True
        buffer = ""
        options = ChatOptions(self.config.max_tokens, self.config.temperature)
        if self._prefill is not None and not self._prefill.done():   # let it finish: it holds the context
            await asyncio.wait([self._prefill], timeout=PREFILL_WAIT_S)
        deltas = self.llm.stream(reply.messages, options)
        try:
            async for delta in deltas:
                if first_token:
                    first_token = False
                    await self._say(reply, Latency("llm", self._ms_since(started)))
                reply.text += delta
                await self._say(reply, AgentText(delta))
                buffer += delta
                while True:
                    clause, buffer = next_clause(buffer, first=not reply.clauses)
                    if clause is None:
                        break
                    self._queue_clause(reply, clauses, clause)
            self._queue_clause(reply, clauses, buffer.strip())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise_if_cancelled()
            await self._say(reply, service_error("llm", exc, "The language model failed to answer"))
        finally:
            await aclose(deltas)
        reply.ended = True
        await self._say(reply, AgentEnd(reply.text.strip()))

    def _queue_clause(self, reply: _Reply, clauses: asyncio.Queue[str | None], clause: str) -> None:
        if speakable(clause):
            reply.clauses.append(_Clause(clause))
            clauses.put_nowait(clause)

    async def _speak(self, reply: _Reply, clauses: asyncio.Queue[str | None]) -> None:
        """Clauses -> paced AudioOut frames; a TTS failure is reported once and the answer goes on as text."""
        assert self.tts is not None
        index = 0
        while (clause := await clauses.get()) is not None:
            if not reply.tts_failed:
                try:
                    await self._speak_clause(reply, index, clause)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    raise_if_cancelled()
                    reply.tts_failed = True
                    await self._say(reply, service_error("tts", exc,
                                                         "Speech synthesis failed; the answer goes on as text"))
            index += 1

    async def _speak_clause(self, reply: _Reply, index: int, text: str) -> None:
        assert self.tts is not None
        started, rate = self.clock.now(), self.config.sample_rate
        frame = max(1, rate * self.config.frame_ms // 1000)
        first = True
        chunks = self.tts.stream(text, reply.voice, reply.language)
        try:
            async for chunk in chunks:
                audio = resample(np.asarray(chunk.audio, np.float32), chunk.sample_rate, rate)
                if first and audio.size:
                    first = False
                    await self._say(reply, Latency("tts_first", self._ms_since(started)))
                for at in range(0, audio.size, frame):
                    await self._play(reply, index, audio[at: at + frame])
        finally:
            await aclose(chunks)
        reply.clauses[index].complete = True

    async def _play(self, reply: _Reply, index: int, audio: np.ndarray) -> None:
        """Send one frame once the client's playback is within `playback_lead_ms` of it (and the reply is
        confirmed: a speculative one has its first frame ready when it is)."""
        await reply.released.wait()
        wait = reply.playback.lead(self.clock.now()) - self.config.playback_lead_ms / 1000
        if wait > 0:
            await self.clock.sleep(wait)
        seconds = audio.size / self.config.sample_rate
        reply.playback.add(self.clock.now(), seconds, index)
        reply.clauses[index].seconds += seconds
        if not reply.audio_sent:
            reply.audio_sent = True
            await self._set_state(SPEAKING)
            if self._turn_ended_at is not None and not reply.followup:
                await self._emit(Latency("total", self._ms_since(self._turn_ended_at)))
                self._turn_ended_at = None
        await self._emit(AudioOut(audio, self.config.sample_rate))

    # -- small things -------------------------------------------------------------------------------------
    async def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            await self._emit(StateChanged(state))

    def _ms_since(self, then: float) -> float:
        return round((self.clock.now() - then) * 1000, 1)


def raise_if_cancelled() -> None:
    """A service stream may turn our cancellation into its own error (Ray's does): cancelled stays cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def aclose(stream: AsyncIterator[Any]) -> None:
    """Close a service's stream now (a barge-in or a gone client must stop it, not the garbage collector)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def service_error(source: str, exc: BaseException, fallback: str) -> Error:
    """An Error event naming the failed service; ApiError messages are written for clients, others are not."""
    if isinstance(exc, ApiError):
        return Error(exc.code, exc.message, source=source)
    log.warning("%s failed: %r", source, exc)
    return Error(f"{source}_failed", f"{fallback}; the conversation goes on.", source=source)

