"""Live sessions (speechcore.sessions) driven by fake model calls.

The clock is the audio: tone = speech, zeros = silence. The fake VAD says
"speech" for loud frames; the fake ASR reports how much audio it was given
(and can be slowed down), so turn boundaries, partial timing, speculation
and ordering are checked exactly, without Ray or models.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from speechcore.errors import ApiError
from speechcore.schemas import Segment, Transcript
from speechcore.sessions.events import Error, Final, StreamError, Transcription, TurnEvent
from speechcore.sessions.live import LiveSession
from speechcore.sessions.transcriber import StreamOptions

SR = 16000


def tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


class Fakes:
    def __init__(self, asr_delay_per_s: float = 0.0):
        self.asr_delay_per_s = asr_delay_per_s
        self.decodes: list[tuple[float, int]] = []   # (seconds of audio, beam size)
        self.events: list[Transcription | Error] = []
        self.turn_events: list[TurnEvent] = []
        self._vad_state = None

    async def vad_step(self, audio, state):
        """A VAD stream with 32 ms frames: the state (opaque to the session) keeps what fills no frame."""
        assert state is self._vad_state                      # the session hands back what it was given
        audio = np.concatenate([state["leftover"], audio]) if state is not None else audio
        n = audio.size // 512
        frames = audio[: n * 512].reshape(n, 512)
        probs = (np.sqrt(np.mean(np.square(frames), axis=1)) > 0.005).astype(np.float32)
        self._vad_state = {"leftover": audio[n * 512:]}
        return probs, 0.032, self._vad_state

    async def transcribe(self, audio, options):
        seconds = len(audio) / SR
        self.decodes.append((round(seconds, 2), options.beam_size))
        await asyncio.sleep(self.asr_delay_per_s * seconds)
        return Transcript(text=f"{seconds:.2f}s", language="en", language_probability=1.0, duration=seconds,
                          segments=[Segment(0, 0.0, seconds, f"{seconds:.2f}s", avg_logprob=-0.1)])

    async def emit(self, event):
        (self.turn_events if isinstance(event, TurnEvent) else self.events).append(event)

    def session(self, **options) -> LiveSession:
        return LiveSession(StreamOptions(**options), self.vad_step, self.transcribe, self.emit)

    def finals(self) -> list[Final]:
        return [e for e in self.events if isinstance(e, Final)]


async def stream(session: LiveSession, audio: np.ndarray, chunk_s: float = 0.1, finish: bool = True):
    step = int(chunk_s * SR)
    for i in range(0, audio.size, step):
        await session.feed(audio[i:i + step])
        await asyncio.sleep(0)
    if finish:
        await session.finish()


def test_turns_split_at_pauses_longer_than_silence_ms():
    fakes = Fakes()
    audio = np.concatenate([silence(0.5), tone(2.0), silence(0.6), tone(1.5), silence(0.6)])
    asyncio.run(stream(fakes.session(), audio))
    finals = fakes.finals()
    assert len(finals) == 2
    assert [f.turn for f in finals] == [0, 1]
    assert finals[0].start_s == pytest.approx(0.5, abs=0.04) and finals[0].end_s == pytest.approx(2.5, abs=0.04)
    assert finals[1].start_s == pytest.approx(3.1, abs=0.04) and finals[1].end_s == pytest.approx(4.6, abs=0.04)
    assert finals[0].offset_s == pytest.approx(0.5 - 0.256, abs=0.04)   # decoded with pre-roll before the onset


def test_short_pause_keeps_one_turn_and_drops_the_speculative_guess():
    fakes = Fakes()
    audio = np.concatenate([tone(1.0), silence(0.2), tone(1.0), silence(0.5)])
    asyncio.run(stream(fakes.session(partial_interval=5.0), audio))
    finals = fakes.finals()
    assert len(finals) == 1
    # the 0.2 s pause started a guess (after 160 ms) that speech made stale; the final covers both tones
    assert len(fakes.decodes) == 2
    assert float(finals[0].transcript.text[:-1]) > 2.2


def test_final_reuses_the_speculative_decode():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(partial_interval=5.0), np.concatenate([tone(1.5), silence(1.0)])))
    assert len(fakes.finals()) == 1 and len(fakes.decodes) == 1
    # the guess started ~160-192 ms into the silence and is what the final reports
    assert fakes.decodes[0][0] == pytest.approx(1.5 + 0.176, abs=0.04)


def test_speculation_off_decodes_at_the_end_of_the_silence():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(partial_interval=5.0, speculate_ms=1000),
                       np.concatenate([tone(1.5), silence(1.0)])))
    assert fakes.decodes[0][0] == pytest.approx(1.5 + 0.3, abs=0.07)


def test_partials_come_every_partial_interval_of_voice_and_before_the_final():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(partial_interval=1.0), np.concatenate([tone(3.5), silence(0.5)])))
    kinds = [e.is_final for e in fakes.events]
    assert kinds[-1] is True and kinds.count(True) == 1
    assert kinds.count(False) == 3
    partial_lengths = [float(e.transcript.text[:-1]) for e in fakes.events if not e.is_final]
    assert partial_lengths == sorted(partial_lengths)
    assert all(beam == 1 for _, beam in fakes.decodes)


def test_partials_wait_while_the_asr_is_busy_but_finals_do_not():
    fakes = Fakes()
    s = LiveSession(StreamOptions(), fakes.vad_step, fakes.transcribe, fakes.emit, partials_allowed=lambda: False)
    asyncio.run(stream(s, np.concatenate([tone(3.5), silence(0.5)])))
    assert [e.is_final for e in fakes.events] == [True]


def test_quiet_audio_under_the_rms_gate_is_not_speech():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(volume_threshold=0.05), np.concatenate([tone(2.0, 0.02), silence(0.5)])))
    assert fakes.events == [] and fakes.decodes == []


def test_a_click_shorter_than_min_speech_is_dropped():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(), np.concatenate([silence(0.3), tone(0.064), silence(1.0)])))
    assert fakes.finals() == []


def test_finish_flushes_the_open_turn():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(), np.concatenate([tone(1.23)])))
    finals = fakes.finals()
    assert len(finals) == 1 and finals[0].end_s == pytest.approx(1.23, abs=0.01)
    assert finals[0].audio is not None and finals[0].audio.size == pytest.approx(1.23 * SR, abs=1)


def test_finals_leave_in_turn_order_even_when_a_later_decode_is_faster():
    fakes = Fakes(asr_delay_per_s=0.05)
    audio = np.concatenate([tone(4.0), silence(0.4), tone(0.5), silence(0.4)])
    asyncio.run(stream(fakes.session(partial_interval=10.0), audio, chunk_s=1.0))
    assert [f.turn for f in fakes.finals()] == [0, 1]


def test_long_speech_is_cut_at_max_turn():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(max_turn_s=3.0, partial_interval=10.0), tone(7.0)))
    assert [round(f.end_s - f.start_s) for f in fakes.finals()] == [3, 3, 1]


def test_close_cancels_work_in_flight():
    fakes = Fakes(asr_delay_per_s=10.0)

    async def run():
        s = fakes.session(partial_interval=0.5)
        await stream(s, tone(1.0), finish=False)
        assert s.in_flight >= 1
        await s.close()
        return s.in_flight

    assert asyncio.run(run()) == 0
    assert fakes.events == []


def test_model_errors_become_error_events_and_the_session_goes_on():
    fakes = Fakes()
    calls = 0

    async def flaky(audio, options):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ApiError(503, "engine_unavailable", "ASR is restarting")
        return await fakes.transcribe(audio, options)

    async def run():
        s = LiveSession(StreamOptions(partial_interval=10.0), fakes.vad_step, flaky, fakes.emit)
        await stream(s, np.concatenate([tone(1.0), silence(0.5), tone(1.0), silence(0.5)]))

    asyncio.run(run())
    assert isinstance(fakes.events[0], Error) and fakes.events[0].code == "engine_unavailable"
    assert len(fakes.finals()) == 1


def test_options_are_validated_with_a_clear_message():
    opts = StreamOptions().updated({"silence_ms": 500, "unknown": 1, "language": None})
    assert opts.silence_ms == 500
    with pytest.raises(StreamError) as err:
        opts.updated({"partial_interval": "soon"})
    assert err.value.code == "invalid_config" and "partial_interval" in err.value.message
    with pytest.raises(StreamError):
        opts.updated({"silence_ms": 10})
