"""Pure pipeline steps (speechcore.pipelines): transcription planning and merging, sentence segments."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from speechcore.pipelines.segments import sentence_segments, split_words
from speechcore.pipelines.transcription import (PlanLimits, asr_requests, decode_options, merge_transcripts,
                                                plan_limits, plan_transcription, speech_sample)
from speechcore.schemas import Segment, Transcript, TranscribeOptions, Word


def words_of(text: str, start: float = 0.0, step: float = 0.4, pauses: dict[int, float] | None = None) -> list[Word]:
    """One Word per whitespace token, `step` seconds each, with extra pauses before given indices."""
    out, t = [], start
    for i, w in enumerate(text.split()):
        t += (pauses or {}).get(i, 0.0)
        out.append(Word(" " + w, round(t, 3), round(t + step * 0.8, 3), 0.9))
        t += step
    return out


# --- planning ------------------------------------------------------------------------------------

def test_plan_merges_close_regions_and_bounds_speech_per_request():
    regions = [(1.0, 5.0), (5.3, 10.0), (30.0, 50.0), (60.0, 80.0), (100.0, 101.0)]
    plan = plan_transcription(regions, PlanLimits(max_chunk_s=28.0, merge_gap_s=0.5, max_request_s=30.0,
                                                  pack_windows=False))
    assert [p.pieces for p in plan] == [((1.0, 10.0), (30.0, 50.0)), ((60.0, 80.0), (100.0, 101.0))]
    assert plan[1].clips == ((0.0, 20.0), (20.0, 21.0))      # in the request's own audio: long pauses left out
    assert all(p.speech_s <= 30.0 for p in plan)
    assert plan_transcription([]) == []                       # silence: nothing to decode


def test_plan_packs_chunks_into_windows_with_their_pauses_cut_short():
    regions = [(2.0, 10.0), (10.6, 14.0), (20.0, 30.0), (45.0, 52.0), (70.0, 90.0)]
    plan = plan_transcription(regions, PlanLimits(max_chunk_s=28.0, merge_gap_s=1.0, packed_gap_s=0.5))
    assert len(plan) == 1
    p = plan[0]
    # 0.6 s pause kept whole; longer pauses keep 0.25 s on each side; windows of <= 28 s
    assert p.pieces == ((2.0, 14.25), (19.75, 30.25), (44.75, 52.25), (69.75, 90.0))
    assert p.clips == ((0.0, 22.75), (22.75, 50.5))
    assert p.recording_time(12.25) == 19.75 and p.recording_time(12.25, end=True) == 14.25   # the seam
    assert p.recording_time(12.75) == 20.25 and p.recording_time(51.0) == 90.5             # past the end
    unpacked = plan_transcription(regions, PlanLimits(pack_windows=False))[0]
    assert len(unpacked.clips) == 4 and unpacked.pieces[0] == (2.0, 14.0)


def test_requests_carry_only_their_pieces_and_merge_restores_recording_time():
    audio = np.arange(100 * 16000, dtype=np.float32)
    plan = plan_transcription([(10.0, 20.0), (70.0, 80.0)], PlanLimits(max_request_s=15.0, pack_windows=False))
    reqs = asr_requests(audio, plan, TranscribeOptions(language="en"))
    assert len(reqs) == 2 and reqs[1].audio[0] == 70 * 16000 and len(reqs[1].audio) == 10 * 16000
    assert reqs[0].clips == [(0.0, 10.0)]
    parts = [Transcript("one.", "en", 1.0, 10.0, [Segment(0, 0.5, 9.0, "one.", words=[Word(" one.", 0.5, 1.0, 0.9)])]),
             Transcript("two.", "en", 1.0, 10.0, [Segment(0, 1.0, 8.0, "two.")])]
    t = merge_transcripts(plan, parts, 100.0, TranscribeOptions())
    assert t.text == "one. two." and t.duration == 100.0
    assert [(s.id, s.start, s.end) for s in t.segments] == [(0, 10.5, 19.0), (1, 71.0, 78.0)]
    assert t.segments[0].words[0].start == 10.5


def test_packed_window_segments_map_back_across_the_cut_pause():
    audio = np.arange(60 * 16000, dtype=np.float32)
    plan = plan_transcription([(5.0, 10.0), (40.0, 45.0)])
    (req,) = asr_requests(audio, plan, TranscribeOptions(language="en"))
    assert req.clips == [(0.0, 10.5)] and req.audio.size == int(10.5 * 16000)
    assert req.audio[int(5.25 * 16000)] == 39.75 * 16000               # the second chunk follows the cut pause
    part = Transcript("a. b.", "en", 1.0, 10.5, [Segment(0, 0.5, 5.0, "a."), Segment(1, 5.5, 10.0, "b.", words=[
        Word(" b.", 5.5, 6.0, 0.9)])])
    t = merge_transcripts(plan, [part], 60.0, TranscribeOptions())
    assert [(s.start, s.end) for s in t.segments] == [(5.5, 10.0), (40.0, 44.5)]
    assert (t.segments[1].words[0].start, t.segments[1].words[0].end) == (40.0, 40.5)


def test_a_segment_across_a_cut_pause_is_split_by_its_words():
    audio = np.zeros(60 * 16000, dtype=np.float32)
    plan = plan_transcription([(5.0, 10.0), (40.0, 45.0)])
    assert decode_options(plan, TranscribeOptions()).word_timestamps      # words are needed to split
    words = [Word(" one", 4.0, 4.5, 0.9), Word(" two.", 4.6, 5.0, 0.9), Word(" three", 5.5, 6.0, 0.9)]
    part = Transcript("one two. three", "en", 1.0, 10.5, [Segment(0, 4.0, 6.0, "one two. three", tokens=[1, 2, 3],
                                                                    words=words)])
    t = merge_transcripts(plan, [part], 60.0, TranscribeOptions())
    assert [(s.id, s.start, s.end, s.text, s.tokens) for s in t.segments] == [
        (0, 9.0, 10.0, "one two.", []), (1, 40.0, 40.5, "three", [])]
    whole = Transcript("x", "en", 1.0, 10.5, [Segment(0, 4.0, 6.0, "x")])          # no words: kept whole
    assert [(s.start, s.end) for s in merge_transcripts(plan, [whole], 60.0, TranscribeOptions()).segments] == [
        (9.0, 40.5)]


def test_windows_are_packed_only_for_fixed_window_models_with_words():
    assert plan_limits({"fixed_window_s": 30}).pack_windows
    assert not plan_limits({}).pack_windows                                      # Moonshine, NeMo
    assert not plan_limits({"fixed_window_s": 30, "word_timestamps": False}).pack_windows
    one = plan_transcription([(5.0, 10.0), (40.0, 45.0)], plan_limits({}))
    assert [p.pieces for p in one] == [((5.0, 10.0), (40.0, 45.0))] and len(one[0].clips) == 2
    assert not decode_options(plan_transcription([(5.0, 10.0)]), TranscribeOptions()).word_timestamps
    assert not decode_options(one, TranscribeOptions()).word_timestamps         # a window per piece: no cut


def test_silence_merges_to_an_empty_transcript_in_the_requested_language():
    t = merge_transcripts([], [], 2.0, TranscribeOptions(language="de"), model="whisper-base")
    assert (t.text, t.segments, t.language, t.duration, t.model) == ("", [], "de", 2.0, "whisper-base")


def test_speech_sample_takes_the_first_speech_only():
    audio = np.concatenate([np.zeros(16000), np.ones(16000 * 40), np.zeros(16000)]).astype(np.float32)
    plan = plan_transcription([(1.0, 41.0)])
    sample = speech_sample(audio, plan, seconds=30.0)
    assert sample.size == 30 * 16000 and sample.min() == 1.0


# --- sentence segments ---------------------------------------------------------------------------

def test_chunk_is_cut_after_sentences_not_after_abbreviations_or_initials():
    text = "And Mr. John Dashwood went to J. Smith. Then they sat down. why not? It rained!"
    seg = Segment(0, 0.0, 20.0, text, tokens=[1, 2, 3], avg_logprob=-0.2, words=words_of(text))
    out = sentence_segments([seg])
    assert [s.text for s in out] == ["And Mr. John Dashwood went to J. Smith.", "Then they sat down. why not?",
                                     "It rained!"]
    assert [s.id for s in out] == [0, 1, 2]
    assert out[0].start == 0.0 and out[-1].end == 20.0            # outer edges keep the decode's span
    assert out[1].start == out[1].words[0].start and out[0].end == out[0].words[-1].end
    assert all(s.avg_logprob == -0.2 and s.tokens == [] for s in out)


def test_long_sentence_is_cut_at_the_clause_nearest_its_middle_else_the_longest_pause():
    text = "one two three four, five six seven eight nine ten eleven, twelve thirteen fourteen"
    pieces = split_words(words_of(text, step=1.0), max_s=8.0)
    assert [" ".join(w.word.strip() for w in p) for p in pieces] == [
        "one two three four,", "five six seven eight nine ten eleven,", "twelve thirteen fourteen"]
    plain = words_of("a b c d e f g h i j", step=1.0, pauses={6: 2.0})
    assert [len(p) for p in split_words(plain, max_s=8.0)] == [6, 4]


def test_segments_without_words_or_short_stay_whole():
    bare = Segment(0, 0.0, 25.0, "No words here. Two sentences.", tokens=[5])
    short = Segment(1, 25.0, 27.0, "Hi there.", tokens=[6], words=words_of("Hi there.", start=25.0))
    out = sentence_segments([bare, short])
    assert out == [bare, short] and out[1].tokens == [6]


@pytest.mark.parametrize("text,pieces", [("Wait... what?", 1), ("He said \"stop.\" She left.", 2),
                                         ("Version 2. 3 items.", 2)])
def test_sentence_ends_with_closers_and_digits(text, pieces):
    assert len(split_words(words_of(text), max_s=30.0)) == pieces


def test_words_flow_across_decoder_segment_breaks_but_not_across_long_pauses():
    a = Segment(0, 18.0, 19.2, "Oh, I'm originally from", tokens=[1], words=words_of("Oh, I'm originally from", 18.0))
    b = Segment(1, 19.2, 21.6, "Chicago also. I'm in Jersey.", tokens=[2],
                words=words_of("Chicago also. I'm in Jersey.", 19.6))
    c = Segment(2, 25.0, 25.5, "Well.", tokens=[3], words=words_of("Well.", 25.0))
    out = sentence_segments([a, b, c])
    assert [s.text for s in out] == ["Oh, I'm originally from Chicago also.", "I'm in Jersey.", "Well."]
    assert out[0].start == 18.0 and out[0].end == b.words[1].end and out[1].end == 21.6
    assert out[2] == replace(c, id=2) and out[2].tokens == [3]      # a sentence already: kept as decoded
    assert [len(s.words) for s in out] == [6, 3, 1]
