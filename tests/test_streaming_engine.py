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
        await stream(s, tone(1.5), finish=False)     # a partial needs a second of voice
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


# -- turn events (the detector alone, and as the session emits them) -------------------------------
def test_turn_events_mark_onset_pause_resumption_and_end():
    fakes = Fakes()
    audio = np.concatenate([silence(0.5), tone(1.0), silence(0.2), tone(1.0), silence(0.5)])
    asyncio.run(stream(fakes.session(partial_interval=5.0), audio))
    kinds = [(type(e).__name__, round(e.at_s, 2)) for e in fakes.turn_events]
    assert [k for k, _ in kinds] == ["SpeechStarted", "SpeechStopped", "SpeechStarted", "SpeechStopped",
                                     "TurnEnded"]
    started, stopped, resumed, _, ended = fakes.turn_events
    assert started.at_s == pytest.approx(0.5, abs=0.04) and not started.resumed
    assert started.turn_start == started.sample - 8 * 512                    # 256 ms of pre-roll
    assert stopped.at_s == pytest.approx(1.5 + 0.16, abs=0.04)               # speculate_ms into the pause
    assert resumed.resumed and resumed.at_s == pytest.approx(1.7, abs=0.04)
    assert ended.reason == "silence" and ended.at_s == pytest.approx(2.7 + 0.3, abs=0.05)
    assert ended.voiced_samples == pytest.approx(2.0 * SR, abs=2 * 512)
    assert {e.turn for e in fakes.turn_events} == {0}


def test_detector_alone_needs_no_model_and_counts_turns():
    from speechcore.sessions.turns import TurnDetector, TurnOptions

    detector = TurnDetector(TurnOptions(silence_ms=96, speculate_ms=32, max_turn_s=2.0))
    verdicts = [1.0] * 3 + [0.0] * 4 + [0.9] * 70      # speech, a pause that ends it, speech past max_turn
    events = [e for p in verdicts for e in detector.step(p, 0.1, 512)]
    names = [(type(e).__name__, e.turn) for e in events]
    assert names == [("SpeechStarted", 0), ("SpeechStopped", 0), ("TurnEnded", 0), ("SpeechStarted", 1),
                     ("TurnEnded", 1), ("SpeechStarted", 2)]
    assert events[2].reason == "silence" and events[4].reason == "max_turn"
    assert events[3].turn_start == 6 * 512                                   # never before the last turn's end
    assert [e.reason for e in detector.finish(100)] == ["end_of_input"]


def test_the_vad_framing_is_its_own():
    """A VAD with 20 ms frames drives the same session: nothing in it assumes Silero's 32 ms."""
    fakes = Fakes()

    async def vad_20ms(audio, state):
        audio = np.concatenate([state, audio]) if state is not None else audio
        n = audio.size // 320
        probs = (np.sqrt(np.mean(np.square(audio[: n * 320].reshape(n, 320)), axis=1)) > 0.005).astype(float)
        return probs, 0.02, audio[n * 320:]

    s = LiveSession(StreamOptions(partial_interval=5.0), vad_20ms, fakes.transcribe, fakes.emit)
    asyncio.run(stream(s, np.concatenate([silence(0.5), tone(1.5), silence(0.6)])))
    final, = fakes.finals()
    assert final.start_s == pytest.approx(0.5, abs=0.02) and final.end_s == pytest.approx(2.0, abs=0.02)


# -- bounded input ---------------------------------------------------------------------------------
def test_audio_feeder_coalesces_and_pushes_back_without_polling():
    from speechcore.sessions.live import AudioFeeder

    fed: list[int] = []
    release = asyncio.Event()

    async def slow_feed(audio):
        fed.append(audio.size)
        await release.wait()

    async def run():
        feeder = AudioFeeder(slow_feed, max_samples=3 * 1600)
        await feeder.put(np.zeros(1600, np.float32))           # taken at once; the feed then blocks
        await asyncio.sleep(0)
        for _ in range(3):
            await feeder.put(np.zeros(1600, np.float32))       # queued while the feed runs
        blocked = asyncio.ensure_future(feeder.put(np.zeros(1600, np.float32)))
        await asyncio.sleep(0.01)
        assert not blocked.done()                              # over the bound: the sender waits
        release.set()
        await blocked
        await feeder.drain()
        await feeder.close()

    asyncio.run(run())
    assert fed == [1600, 3 * 1600, 1600]                       # the backlog went in as one call


def test_vad_failures_become_error_events_without_internals():
    fakes = Fakes()

    async def broken(audio, state):
        raise RuntimeError("onnxruntime: /models/silero.onnx failed in pid 4242")

    s = LiveSession(StreamOptions(), broken, fakes.transcribe, fakes.emit)
    asyncio.run(stream(s, tone(0.5)))
    assert {e.code for e in fakes.events} == {"vad_failed"}
    assert not any("/" in e.message or "4242" in e.message or "onnx" in e.message for e in fakes.events)


def test_asr_failures_on_finals_send_no_internals():
    fakes = Fakes()

    async def broken(audio, options):
        raise ValueError("Traceback ... File \"/srv/faster_whisper/tokenizer.py\" 'xx' is not a valid language")

    s = LiveSession(StreamOptions(partial_interval=5.0), fakes.vad_step, broken, fakes.emit)
    asyncio.run(stream(s, np.concatenate([tone(1.0), silence(0.5)])))
    error, = fakes.events
    assert error.code == "asr_failed" and "Traceback" not in error.message and "/" not in error.message


# -- the real VAD's streaming contract --------------------------------------------------------------
def test_silero_streams_in_any_chunking_match_the_whole_recording():
    """Chunks of any size, several streams batched together: the same probabilities as one offline pass."""
    from speechcore.audio import decode_audio
    from speechcore.backends.silero_vad import SileroVAD
    from speechcore.spec import BackendSpec
    from tests.speech import librivox

    vad = SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad"))
    a, b = [decode_audio(p.read_bytes())[: 5 * SR] for p in sorted(librivox())[:2]]
    offline = [vad.frame_probs(x)[: x.size // 512] for x in (a, b)]
    sizes = {0: [1000, 333, 4096, 1600, 7], 1: [1600]}
    got: dict[int, list] = {0: [], 1: []}
    states, cursors = [None, None], [0, 0]
    while any(c < x.size for c, x in zip(cursors, (a, b))):
        items, who = [], []
        for i, x in enumerate((a, b)):
            if cursors[i] < x.size:
                step = sizes[i][len(got[i]) % len(sizes[i])]
                items.append((x[cursors[i]: cursors[i] + step], states[i]))
                who.append(i)
                cursors[i] += step
        for i, (probs, frame_s, state) in zip(who, vad.stream_probs_batch(items)):
            assert frame_s == 0.032
            got[i].append(probs)
            states[i] = state
    for i in (0, 1):
        streamed = np.concatenate(got[i])
        assert streamed.shape == offline[i].shape
        np.testing.assert_allclose(streamed, offline[i], atol=1e-4)
    assert (offline[0] > 0.5).mean() > 0.5                 # it is speech, so the comparison means something


# -- what partials may show ---------------------------------------------------------------------------
def looping_asr(fakes: Fakes):
    """Like whisper-base with the short window on some lengths: the sentence, then copies past the audio."""
    async def transcribe(audio, options):
        seconds = len(audio) / SR
        fakes.decodes.append((round(seconds, 2), options.beam_size))
        said = Segment(0, 0.0, seconds - 0.1, "and mister john dashwood had then leisure", avg_logprob=-0.2)
        copies = [Segment(i, seconds + i, seconds + i + 1, "and mister john dashwood had then leisure",
                          avg_logprob=-0.2) for i in range(1, 5)]
        segments = [said] + copies
        return Transcript(" ".join(s.text for s in segments), "en", 1.0, seconds, segments)
    return transcribe


def test_segments_past_the_end_of_the_audio_are_never_shown():
    fakes = Fakes()
    s = LiveSession(StreamOptions(partial_interval=1.0), fakes.vad_step, looping_asr(fakes), fakes.emit)
    asyncio.run(stream(s, np.concatenate([tone(3.5), silence(0.5)])))
    assert [e.is_final for e in fakes.events].count(False) == 3
    assert all(e.transcript.text == "and mister john dashwood had then leisure" for e in fakes.events)
    assert all(seg.start < e.transcript.duration for e in fakes.events for seg in e.transcript.segments)


@pytest.mark.parametrize("text,logprob", [("Mr John, " * 30, -0.07),          # a repetition loop
                                          ("How", -1.36)])                     # a guess
def test_partials_whisper_would_reject_are_dropped_but_finals_are_kept(text, logprob):
    fakes = Fakes()

    async def transcribe(audio, options):
        seconds = len(audio) / SR
        return Transcript(text, "en", 1.0, seconds, [Segment(0, 0.0, seconds, text, avg_logprob=logprob)])

    s = LiveSession(StreamOptions(partial_interval=1.0), fakes.vad_step, transcribe, fakes.emit)
    asyncio.run(stream(s, np.concatenate([tone(3.5), silence(0.5)])))
    assert [e.is_final for e in fakes.events] == [True]


def test_quality_signals():
    from speechcore.sessions.quality import compression_ratio, within_audio, worth_showing

    said = "and mister john dashwood had then leisure to consider how much there might be"
    assert compression_ratio(said) < 1.5 and compression_ratio("He was not. " * 8) > 2.4
    ok = Transcript(said, "en", 1.0, 6.2, [Segment(0, 0.0, 6.16, said, avg_logprob=-0.2)])
    assert worth_showing(ok) and within_audio(ok, 6.25) is ok
    looped = Transcript(said + " it. " + said, "en", 1.0, 6.2,
                        [Segment(0, 0.0, 6.16, said), Segment(1, 6.16, 7.16, "it."), Segment(2, 7.16, 8.16, said)])
    assert within_audio(looped, 6.25).text == said + " it."
    rounded_up = Transcript("And Mr. John De-", "en", 1.0, 1.2, [Segment(0, 0.0, 2.0, "And Mr. John De-")])
    assert within_audio(rounded_up, 1.224) is rounded_up     # batched decodes round segment ends up


def test_no_partial_before_a_second_of_voice_even_at_short_intervals():
    fakes = Fakes()
    asyncio.run(stream(fakes.session(partial_interval=0.2), np.concatenate([tone(1.5), silence(0.5)])))
    partials = [float(e.transcript.text[:-1]) for e in fakes.events if not e.is_final]
    assert partials and min(partials) >= 1.0                      # turn audio: at least 1 s of voice


def test_a_decoder_starting_over_is_cut_at_the_repeat():
    from speechcore.sessions.quality import without_repeats

    said = ["He might even have been made.", "He might even have been made.", "amiable"]
    t = Transcript(" ".join(said), "en", 1.0, 2.0, [Segment(i, i * 0.5, i * 0.5 + 0.5, x) for i, x in enumerate(said)])
    assert without_repeats(t).text == "He might even have been made."
