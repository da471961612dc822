"""The conversation engine (speechcore.sessions.conversation) with fake services and a fake clock.

The recognizer is the real LiveSession over a fake energy VAD and a fake ASR
that answers the text the test scripted; the LLM yields scripted words (one
per 20 ms of fake time), the TTS 0.3 s of audio per word. Time moves only
when the test advances the clock, so pacing, barge-in and follow-ups are
checked exactly.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools

import numpy as np
import pytest

from speechcore.errors import ApiError
from speechcore.schemas import ChatMessage, Segment, Speech, Transcript
from speechcore.sessions.conversation import (ChatOptions, Conversation, ConversationConfig, Playback, _Clause,
                                              heard_text, next_clause, route_language, speculative_pause)
from speechcore.sessions.events import (AgentEnd, AgentText, AudioIn, AudioOut, Commit, Error, Final, Interrupted,
                                        Latency, Partial, StateChanged, TextIn, Thinking)
from speechcore.sessions.live import LiveSession
from speechcore.sessions.transcriber import StreamOptions

SR = 16000
WORD_S = 0.3
ANSWER = "Sure, I can help with that. The weather today is sunny and warm. Enjoy your afternoon outside."


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class FakeClock:
    """Time moves only in `advance`; sleepers wake in deadline order."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._n = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._n), future))
        await future

    async def advance(self, seconds: float) -> None:
        target = self.t + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                self.t = max(self.t, due)
                future.set_result(None)
                await settle()
        self.t = target
        await settle()


class FakeLLM:
    def __init__(self, clock: FakeClock, answers: list[str] | None = None, fail: Exception | None = None):
        self.clock, self.answers, self.fail = clock, list(answers or [ANSWER]), fail
        self.calls: list[list] = []
        self.completed = self.cancelled = 0

    async def stream(self, messages, options: ChatOptions):
        self.calls.append(list(messages))
        if self.fail is not None:
            raise self.fail
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        try:
            for i, word in enumerate(answer.split(" ")):
                await self.clock.sleep(0.02)
                yield word if i == 0 else " " + word
            self.completed += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise


class PrefillingLLM(FakeLLM):
    """A FakeLLM that reads prompts ahead (like llama.cpp's pool), recording when and what."""

    def __init__(self, clock: FakeClock, answers: list[str] | None = None, fail: Exception | None = None):
        super().__init__(clock, answers, fail)
        self.prefills: list[tuple[float, list]] = []
        self.streams_at: list[float] = []

    async def prefill(self, messages) -> None:
        await self.clock.sleep(0.05)
        self.prefills.append((self.clock.now(), list(messages)))

    async def stream(self, messages, options: ChatOptions):
        self.streams_at.append(self.clock.now())
        async for piece in super().stream(messages, options):
            yield piece


class FakeTTS:
    def __init__(self, clock: FakeClock, fail: Exception | None = None):
        self.clock, self.fail = clock, fail
        self.calls: list[tuple[str, str | None, str | None]] = []

    async def stream(self, text: str, voice: str | None, language: str | None):
        self.calls.append((text, voice, language))
        if self.fail is not None:
            raise self.fail
        await self.clock.sleep(0.05)
        yield Speech(np.full(int(len(text.split()) * WORD_S * SR), 0.1, np.float32), SR)


class Harness:
    def __init__(self, llm_answers: list[str] | None = None, llm_fail=None, tts_fail=None, voice_for=None,
                 partial_interval: float = 30.0, llm_class: type = FakeLLM, **config) -> None:
        self.clock = FakeClock()
        self.events: list[tuple[float, object]] = []
        self.partial_interval = partial_interval
        self.llm = llm_class(self.clock, llm_answers, llm_fail)
        self.tts = FakeTTS(self.clock, tts_fail)
        self.next_text, self.next_language = "What is the weather like?", "en"
        self.config = ConversationConfig(**config)
        self.conv = Conversation(self.config, self.recognizer, self.llm, self.tts, self.emit, self.clock, voice_for)

    def recognizer(self, emit) -> LiveSession:
        return LiveSession(StreamOptions(**self.config.turn_fields(), partial_interval=self.partial_interval),
                           self.vad_step, self.transcribe, emit)

    async def vad_step(self, audio, state):
        audio = np.concatenate([state, audio]) if state is not None else audio
        n = audio.size // 512
        probs = (np.abs(audio[: n * 512].reshape(n, 512)).max(axis=1) > 0.05).astype(np.float32)
        return probs, 0.032, audio[n * 512:]

    async def transcribe(self, audio, options):
        seconds = audio.size / SR
        return Transcript(text=self.next_text, language=self.next_language, language_probability=1.0,
                          duration=seconds, segments=[Segment(0, 0.0, seconds, self.next_text)])

    async def emit(self, event) -> None:
        self.events.append((self.clock.now(), event))

    async def say(self, seconds: float, then_silence: float = 0.0) -> None:
        """Real-time audio: 100 ms chunks, the clock advancing with each."""
        t = np.arange(int(seconds * SR)) / SR
        audio = np.concatenate([(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
                                np.zeros(int(then_silence * SR), np.float32)])
        for i in range(0, audio.size, 1600):
            await self.conv.handle(AudioIn(audio[i:i + 1600]))
            await self.clock.advance(0.1)

    def of(self, kind) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]

    def states(self) -> list[str]:
        return [e.state for e in self.of(StateChanged)]

    def audio_seconds(self) -> float:
        return sum(e.audio.size / e.sample_rate for e in self.of(AudioOut))


def run(coro):
    return asyncio.run(coro)


# -- pure helpers -------------------------------------------------------------------------------------
def test_clauses_cut_first_at_a_comma_then_at_sentences():
    assert next_clause("Sure, I can", first=True) == (None, "Sure, I can")          # too short for a comma cut
    assert next_clause("Well, let me see, I can", first=True) == ("Well, let me see,", "I can")
    assert next_clause("Well, let me see, I can", first=False) == (None, "Well, let me see, I can")
    assert next_clause("It is sunny. And", first=False) == ("It is sunny.", "And")
    clause, rest = next_clause("word " * 60, first=False)
    assert clause is not None and len(clause) <= 200 and (clause + " " + rest).split() == ["word"] * 60


def test_first_clause_ends_at_punctuation_that_ends_the_text_so_far():
    """The first clause need not wait for the next token's space (one token sooner), except after a digit."""
    assert next_clause("I'm glad to hear,", first=True) == ("I'm glad to hear,", "")
    assert next_clause("Sure thing.", first=True) == ("Sure thing.", "")
    assert next_clause("Sure,", first=True) == (None, "Sure,")                    # too short for a comma cut
    assert next_clause("It costs about 3,", first=True) == (None, "It costs about 3,")   # may be "3,000"
    assert next_clause("It costs about 3.", first=True) == (None, "It costs about 3.")   # may be "3.5"
    assert next_clause("I'm glad to hear,", first=False) == (None, "I'm glad to hear,")


def test_speculation_starts_early_enough_for_the_decode_to_end_with_the_silence():
    assert speculative_pause(500) == 160                  # live transcription's pause
    assert speculative_pause(300) == 100                  # 200 ms left for the decode
    assert speculative_pause(150) == 96                   # never on the shortest pauses
    assert ConversationConfig(silence_ms=300).turn_fields()["speculate_ms"] == 100
    assert ConversationConfig(silence_ms=300, speculate_ms=250).turn_fields()["speculate_ms"] == 250


def test_language_routing_prefix_then_detection_then_default():
    assert route_language("[FR] Bonjour", "en", "vi") == ("Bonjour", "fr")
    assert route_language("Hello", "en", "vi") == ("Hello", "en")
    assert route_language("Xin chào", None, "vi") == ("Xin chào", "vi")


def test_heard_text_whole_clauses_then_played_share_by_words():
    clauses = [_Clause("One two.", 0.6, True), _Clause("Three four five six.", 1.2, True), _Clause("Seven.", 0.3)]
    playback = Playback()
    playback.add(0.0, 0.6, 0)
    playback.add(0.0, 1.2, 1)
    assert heard_text(clauses, playback.heard(0.3)) == "One"
    assert heard_text(clauses, playback.heard(0.6 + 0.6)) == "One two. Three four"
    assert heard_text(clauses, playback.heard(5.0)) == "One two. Three four five six."


def test_config_refuses_bad_values_with_the_field():
    with pytest.raises(ApiError) as err:
        ConversationConfig().updated({"barge_in_min_ms": -5})
    assert "barge_in_min_ms" in err.value.message


# -- a turn ---------------------------------------------------------------------------------------------
def test_spoken_turn_gets_streamed_text_and_paced_audio():
    async def go():
        h = Harness(language="en")
        await h.say(1.0, then_silence=0.8)
        await h.clock.advance(15)
        return h
    h = run(go())
    assert [f.transcript.text for f in h.of(Final)] == ["What is the weather like?"]
    assert "".join(e.text for e in h.of(AgentText)) == ANSWER
    assert h.of(AgentEnd)[0].text == ANSWER and not h.of(AgentEnd)[0].interrupted
    assert h.states() == ["user_speaking", "listening", "thinking", "speaking", "listening"]
    assert {e.step for e in h.of(Latency)} == {"asr", "llm", "tts_first", "total"}
    # each clause is synthesized once complete (sentences here; a long first clause ends at a comma)
    assert [c[0] for c in h.tts.calls] == ["Sure, I can help with that.", "The weather today is sunny and warm.",
                                           "Enjoy your afternoon outside."]
    assert all(e.sample_rate == 24000 for e in h.of(AudioOut))
    assert h.audio_seconds() == pytest.approx(len(ANSWER.split()) * WORD_S, abs=0.01)
    # never more than the lead (plus a frame) ahead of the client's playback
    first = next(t for t, e in h.events if isinstance(e, AudioOut))
    sent = 0.0
    for t, e in h.events:
        if isinstance(e, AudioOut):
            sent += e.audio.size / e.sample_rate
            assert sent - (t - first) <= 0.4 + 0.1 + 1e-6
    system, user = h.llm.calls[0]
    assert system.role == "system" and "English" in system.content
    assert (user.role, user.content) == ("user", "What is the weather like?")
    assert [(m.role, m.content) for m in h.conv.history] == [("user", "What is the weather like?"),
                                                             ("assistant", ANSWER)]


def test_answer_is_prepared_in_the_closing_silence_and_sent_when_the_final_confirms_it():
    """A pause starts the LLM and the first TTS audio on the guessed final; nothing reaches the client before
    the turn's Final, and then the first audio goes out at once."""
    async def go():
        h = Harness(language="en", silence_ms=600)
        await h.say(1.0, then_silence=0.4)          # paused, turn still open
        prepared = (len(h.llm.calls), len(h.tts.calls), [type(e).__name__ for _, e in h.events])
        await h.say(0.0, then_silence=0.6)
        await h.clock.advance(15)
        return h, prepared
    h, (llm_calls, tts_calls, seen) = run(go())
    assert (llm_calls, tts_calls) == (1, 1)
    assert not {"Final", "Thinking", "AgentText", "AudioOut", "Latency"} & set(seen)
    final_at = next(t for t, e in h.events if isinstance(e, Final))
    first_audio = next(t for t, e in h.events if isinstance(e, AudioOut))
    assert first_audio == final_at
    assert len(h.llm.calls) == 1 and "".join(e.text for e in h.of(AgentText)) == ANSWER
    assert h.states() == ["user_speaking", "listening", "thinking", "speaking", "listening"]
    assert [(m.role, m.content) for m in h.conv.history] == [("user", "What is the weather like?"),
                                                             ("assistant", ANSWER)]


def test_the_turns_prompt_is_read_ahead_from_partials_and_the_answer_waits_for_it():
    """While the user speaks, each partial (one at a time) has the LLM read the prompt the turn will have;
    the answer's request starts after that read, with the same beginning; none while the agent talks."""
    async def go():
        h = Harness(language="en", partial_interval=0.5, llm_class=PrefillingLLM)
        await h.say(2.5, then_silence=0.8)
        await h.clock.advance(15)
        return h
    h = run(go())
    llm = h.llm
    assert h.of(Partial) and llm.prefills
    user = ChatMessage("user", "What is the weather like?")
    assert all(messages[-1] == user and messages[0].role == "system" for _, messages in llm.prefills)
    assert len(llm.calls) == 1 and llm.calls[0] == llm.prefills[-1][1]         # the request reads nothing new
    assert llm.prefills[-1][0] <= llm.streams_at[0]
    first_audio = next(t for t, e in h.events if isinstance(e, AudioOut))
    assert all(t < first_audio for t, _ in llm.prefills)


def test_speech_resuming_after_a_pause_drops_the_prepared_answer():
    async def go():
        h = Harness(language="en", silence_ms=600)
        await h.say(1.0, then_silence=0.3)
        h.next_text = "What is the weather like in Paris?"
        await h.say(0.8, then_silence=1.0)
        await h.clock.advance(15)
        return h
    h = run(go())
    assert len(h.llm.calls) == 2 and h.llm.cancelled == 1
    assert h.llm.calls[1][-1].content == "What is the weather like in Paris?"
    assert len(h.of(Thinking)) == 1 and len(h.of(AgentEnd)) == 1         # the dropped answer never showed
    assert "".join(e.text for e in h.of(AgentText)) == ANSWER
    assert [m.content for m in h.conv.history] == ["What is the weather like in Paris?", ANSWER]


def test_a_turn_too_short_to_answer_drops_the_prepared_answer():
    async def go():
        h = Harness(language="en", silence_ms=600, min_speech_ms=400)
        await h.say(0.2, then_silence=2.0)
        await h.clock.advance(5)
        return h
    h = run(go())
    assert len(h.llm.calls) == 1 and h.conv._guess is None       # prepared, then dropped
    assert not h.of(Final) and not h.of(Thinking) and not h.of(AudioOut) and h.conv.history == []
    assert h.states() == ["user_speaking", "listening"]


def test_text_input_during_a_pause_replaces_the_prepared_answer():
    async def go():
        h = Harness(language="en", silence_ms=600)
        await h.say(1.0, then_silence=0.3)
        await h.conv.handle(TextIn("Tell me a joke."))
        await h.clock.advance(15)
        return h
    h = run(go())
    assert h.llm.cancelled >= 1 and h.llm.calls[-1][-1].content.endswith("Tell me a joke.")
    assert len(h.of(Thinking)) == 1


def test_barge_in_stops_everything_and_keeps_what_was_heard():
    async def go():
        h = Harness(language="en")
        await h.conv.handle(TextIn("Tell me about the weather."))
        await h.clock.advance(1.5)                 # the user hears about 1.5 s of the answer ...
        await h.say(0.6)                           # ... then talks over it
        n_audio = len(h.of(AudioOut))
        await h.clock.advance(5)
        return h, n_audio
    h, n_audio = run(go())
    interrupted = h.of(Interrupted)
    assert len(interrupted) == 1
    assert len(h.of(AudioOut)) == n_audio                                   # nothing after the barge-in
    kinds = [type(e) for _, e in h.events]
    assert AudioOut not in kinds[kinds.index(Interrupted):]
    heard = interrupted[0].heard
    assert ANSWER.startswith(heard) and 2 <= len(heard.split()) < len(ANSWER.split())
    assert h.audio_seconds() < 1.5 + 0.6 + 0.4 + 0.2                        # sent: played + the lead
    assert h.llm.cancelled + h.llm.completed == 1
    assert h.conv.history[-1].role == "assistant" and h.conv.history[-1].content == heard
    assert h.states()[-1] == "user_speaking" and h.conv.state == "user_speaking"


def test_barge_in_then_the_users_turn_is_answered_with_the_truncated_history():
    async def go():
        h = Harness(llm_answers=[ANSWER, "Okay."], language="en")
        await h.conv.handle(TextIn("Tell me about the weather."))
        await h.clock.advance(1.0)
        h.next_text = "Stop, what about tomorrow?"
        await h.say(0.8, then_silence=0.8)
        await h.clock.advance(5)
        return h
    h = run(go())
    assert len(h.llm.calls) == 2
    roles = [(m.role, m.content) for m in h.llm.calls[1][1:]]
    assert roles[0] == ("user", "Tell me about the weather.")
    assert roles[1][0] == "assistant" and roles[1][1] == h.of(Interrupted)[0].heard
    assert roles[2] == ("user", "Stop, what about tomorrow?")


def test_short_burst_while_speaking_is_echo_not_barge_in():
    async def go():
        h = Harness(language="en", silence_ms=300)
        await h.conv.handle(TextIn("Tell me about the weather."))
        await h.clock.advance(1.0)
        await h.say(0.15, then_silence=0.5)        # under barge_in_min_ms
        await h.clock.advance(15)
        return h
    h = run(go())
    assert not h.of(Interrupted)
    assert len(h.llm.calls) == 1                   # the burst's transcript is not answered
    assert h.audio_seconds() == pytest.approx(len(ANSWER.split()) * WORD_S, abs=0.01)


def test_half_duplex_ignores_speech_while_the_agent_talks():
    async def go():
        h = Harness(language="en", barge_in=False)
        await h.conv.handle(TextIn("Tell me about the weather."))
        await h.clock.advance(1.0)
        await h.say(1.0, then_silence=0.6)
        await h.clock.advance(15)
        return h
    h = run(go())
    assert not h.of(Interrupted) and len(h.llm.calls) == 1


def test_text_input_interrupts_at_once_and_is_answered():
    async def go():
        h = Harness(llm_answers=[ANSWER, "Sure."], language="en")
        await h.conv.handle(TextIn("Tell me about the weather."))
        await h.clock.advance(1.0)
        await h.conv.handle(TextIn("Never mind."))
        await h.clock.advance(5)
        return h
    h = run(go())
    assert len(h.of(Interrupted)) == 1 and len(h.of(Thinking)) == 2
    assert h.llm.calls[1][-1].content == "Never mind."
    assert h.conv.history[-1].content == "Sure."


def test_manual_commit_gathers_turns_until_commit():
    async def go():
        h = Harness(language="en", commit="manual")
        h.next_text = "First part."
        await h.say(0.8, then_silence=0.8)
        h.next_text = "Second part."
        await h.say(0.8, then_silence=0.8)
        before = len(h.llm.calls)
        await h.conv.handle(Commit())
        await h.clock.advance(10)
        return h, before
    h, before = run(go())
    assert before == 0 and len(h.llm.calls) == 1
    assert h.llm.calls[0][-1].content == "First part. Second part."


def test_proactive_followup_after_silence_is_bounded():
    async def go():
        h = Harness(llm_answers=["Hello there.", "Are you still there?", "Third."], language="en",
                    followup_after_s=5, followup_max=1)
        await h.conv.handle(TextIn("Hi."))
        await h.clock.advance(4)                   # answered and played
        n = len(h.of(Thinking))
        await h.clock.advance(5)                   # the silence: one follow-up
        await h.clock.advance(30)                  # no second one
        return h, n
    h, n = run(go())
    thinking = h.of(Thinking)
    assert n == 1 and len(thinking) == 2 and thinking[1].followup
    assert "said nothing for 5 seconds" in h.llm.calls[1][-1].content
    assert [m.content for m in h.conv.history] == ["Hi.", "Hello there.", "Are you still there?"]


def test_language_routing_picks_the_voice_and_tells_the_llm():
    voices = {"fr": "fr-voice", "en": "en-voice"}

    async def go():
        h = Harness(llm_answers=["Bonjour à vous.", "Hello."], voice_for=voices.get, language="vi", voice="default")
        await h.conv.handle(TextIn("[fr] Bonjour"))
        await h.clock.advance(5)
        h.next_text, h.next_language = "Good morning.", "en"       # detected by the ASR
        await h.say(0.8, then_silence=0.8)
        await h.clock.advance(5)
        return h
    h = run(go())
    assert h.llm.calls[0][-1].content == "Bonjour" and "French" in h.llm.calls[0][0].content
    assert h.tts.calls[0][1:] == ("fr-voice", "fr")
    assert "English" in h.llm.calls[1][0].content and h.tts.calls[-1][1:] == ("en-voice", "en")


def test_llm_failure_is_an_error_event_and_the_conversation_goes_on():
    async def go():
        h = Harness(llm_fail=ApiError(503, "llm_unavailable", "The LLM is not running."), language="en")
        await h.conv.handle(TextIn("Hi."))
        await h.clock.advance(2)
        h.llm.fail = None
        await h.conv.handle(TextIn("Hi again."))
        await h.clock.advance(10)
        return h
    h = run(go())
    errors = h.of(Error)
    assert [(e.source, e.code) for e in errors] == [("llm", "llm_unavailable")]
    assert len(h.of(AgentEnd)) == 2 and h.of(AgentEnd)[1].text == ANSWER
    assert h.conv.history[0].content == "Hi. Hi again."            # the unanswered turn joins the next


def test_tts_failure_reports_once_and_the_text_goes_on():
    async def go():
        h = Harness(tts_fail=RuntimeError("/secret/path exploded"), language="en")
        await h.conv.handle(TextIn("Hi."))
        await h.clock.advance(5)
        return h
    h = run(go())
    errors = h.of(Error)
    assert len(errors) == 1 and errors[0].source == "tts" and "/secret" not in errors[0].message
    assert "".join(e.text for e in h.of(AgentText)) == ANSWER and not h.of(AudioOut)
    assert h.conv.history[-1].content == ANSWER and h.conv.state == "listening"


def test_history_is_bounded_by_tokens():
    async def go():
        h = Harness(llm_answers=["A fairly long answer that takes up some room in the history."] * 2,
                    language="en", history_max_tokens=100)
        for i in range(12):
            await h.conv.handle(TextIn(f"Question number {i} asks something fairly long as well."))
            await h.clock.advance(20)
        return h
    h = run(go())
    assert sum(len(m.content) // 4 + 1 for m in h.conv.history) <= 100
    assert h.conv.history[-2].content.startswith("Question number 11")
    assert sum(len(m.content) // 4 + 1 for m in h.llm.calls[-1]) <= 100 + len(h.llm.calls[-1][-1].content)


def test_close_mid_answer_cancels_every_task():
    async def go():
        h = Harness(language="en", followup_after_s=3)
        await h.conv.handle(TextIn("Tell me about the weather."))
        await h.clock.advance(0.1)                 # the LLM is mid-answer
        await h.conv.close()
        await settle()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        n = len(h.events)
        await h.clock.advance(10)
        return h, left, n
    h, left, n = run(go())
    assert left == [] and h.llm.cancelled == 1 and len(h.events) == n


def test_commit_ends_an_open_turn_at_once():
    async def go():
        h = Harness(language="en", silence_ms=2000)
        await h.say(1.0)                           # still talking as far as the VAD knows
        before = len(h.llm.calls)
        await h.conv.handle(Commit())
        await h.clock.advance(5)
        return h, before
    h, before = run(go())
    assert before == 0 and [f.transcript.text for f in h.of(Final)] == ["What is the weather like?"]
    assert len(h.llm.calls) == 1 and h.of(AgentEnd)[0].text == ANSWER


def test_a_stream_that_turns_cancellation_into_its_own_error_is_still_cancelled():
    class Swallowing(FakeLLM):
        async def stream(self, messages, options):
            try:
                async for piece in super().stream(messages, options):
                    yield piece
            except asyncio.CancelledError:
                raise RuntimeError("request cancelled") from None    # as Ray's response generators may

    async def go():
        h = Harness(language="en")
        h.llm = h.conv.llm = Swallowing(h.clock)
        await h.conv.handle(TextIn("Tell me about the weather."))
        await h.clock.advance(0.1)                 # mid-answer
        await h.conv.handle(TextIn("Stop."))
        await h.clock.advance(10)
        return h
    h = run(go())
    assert not h.of(Error) and len(h.of(Interrupted)) == 1
    assert [e.interrupted for e in h.of(AgentEnd)] == [True, False]
