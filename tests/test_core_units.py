"""Pure logic of speechcore, without Ray or models."""
from __future__ import annotations

import numpy as np
import pytest

from speechcore.audio import pcm_to_float, resample
from speechcore.errors import ApiError, AudioError, error_body, family_of
from speechcore.formats import segment_confidence, to_srt, to_vtt, transcript_confidence
from speechcore.languages import normalize_language
from speechcore.schemas import Segment, Transcript, Word
from speechcore.textmetrics import normalize, wer
from speechcore.vad import FRAME_SECONDS, RegionOptions, merge_for_decoding, speech_regions


def probs_for(pattern: list[tuple[float, float]], total_s: float) -> np.ndarray:
    """Frame probabilities: 0.9 inside the given (start, end) seconds, 0.05 elsewhere."""
    t = np.arange(int(total_s / FRAME_SECONDS)) * FRAME_SECONDS
    p = np.full(t.size, 0.05)
    for s, e in pattern:
        p[(t >= s) & (t < e)] = 0.9
    return p


def test_speech_regions_follow_speech_with_padding():
    regions = speech_regions(probs_for([(1.0, 2.0), (4.0, 5.5)], 8.0), 8.0, RegionOptions(speech_pad_ms=200))
    assert len(regions) == 2
    assert regions[0] == pytest.approx((0.8, 2.2), abs=0.05)
    assert regions[1] == pytest.approx((3.8, 5.7), abs=0.05)


def test_short_pauses_and_blips_do_not_split_or_count():
    p = probs_for([(1.0, 2.0), (2.1, 3.0), (6.0, 6.1)], 8.0)   # 100 ms pause, 100 ms blip
    regions = speech_regions(p, 8.0, RegionOptions(min_silence_ms=300, min_speech_ms=250, speech_pad_ms=0))
    assert len(regions) == 1 and regions[0] == pytest.approx((1.0, 3.0), abs=0.05)


def test_long_speech_is_cut_below_the_max_length():
    regions = speech_regions(probs_for([(0.0, 70.0)], 70.0), 70.0, RegionOptions(max_speech_s=28, speech_pad_ms=0))
    assert len(regions) >= 3 and all(e - s <= 28.1 for s, e in regions)
    assert regions[0][0] == 0.0 and regions[-1][1] == pytest.approx(70.0, abs=0.05)


def test_merge_for_decoding_respects_gap_and_chunk_length():
    regions = [(0.0, 5.0), (5.3, 10.0), (12.0, 20.0), (20.2, 31.0)]
    assert merge_for_decoding(regions, 15.0, 0.5) == [(0.0, 10.0), (12.0, 20.0), (20.2, 31.0)]
    assert merge_for_decoding(regions, 28.0, 5.0) == [(0.0, 20.0), (20.2, 31.0)]


def test_subtitles_and_confidence():
    segs = [Segment(0, 0.0, 1.5, " Hello there.", avg_logprob=-0.1),
            Segment(1, 3661.25, 3662.0, "Bye.", words=[Word("Bye.", 3661.25, 3662.0, 0.5)])]
    srt = to_srt(segs)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n")
    assert "2\n01:01:01,250 --> 01:01:02,000\nBye." in srt
    assert to_vtt(segs).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.")
    assert segment_confidence(segs[0]) == pytest.approx(np.exp(-0.1), abs=1e-3)
    assert segment_confidence(segs[1]) == 0.5
    t = Transcript("x", "en", 1.0, 4000, segs)
    assert segment_confidence(segs[1]) < transcript_confidence(t) < segment_confidence(segs[0])


def test_wer_normalises_case_punctuation_and_digits():
    assert wer("Ten of clubs", "10 of clubs.") == 0.0
    assert wer("he was not an ill disposed young man", "He was not an ill-disposed young man.") == 0.0
    assert wer("a b c d", "a x c") == 0.5
    assert normalize("Mr. Dashwood's") == ["mr", "dashwood's"]


@pytest.mark.parametrize("given,code", [(None, None), ("", None), ("auto", None), ("EN", "en"), ("english", "en"),
                                        ("en-US", "en"), ("pt_BR", "pt"), ("klingon", "klingon")])
def test_language_normalisation(given, code):
    assert normalize_language(given) == code


def test_error_shapes_per_family():
    from graphs.routers import gateway_speech, openai_audio  # noqa: F401  (the routers register their families)

    assert family_of("/v1/speech/transcribe") == "gateway" and family_of("/v1/audio/speech") == "openai"
    assert family_of("/speakers/x/enroll") == "detail"
    assert error_body("/v1/speech/x", 404, "model_not_found", "nope") == {
        "error": {"code": "model_not_found", "message": "nope"}}
    openai = error_body("/v1/audio/transcriptions", 400, "invalid_value", "bad", "language")["error"]
    assert openai == {"message": "bad", "type": "invalid_request_error", "param": "language", "code": "invalid_value"}
    assert error_body("/transcribe", 422, "no_speech", "quiet") == {"detail": "quiet"}


def test_pcm_conversion_and_resampling():
    pcm = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    assert pcm_to_float(pcm).tolist() == pytest.approx([0, 0.5, -1.0, 1.0], abs=1e-4)
    stereo = np.array([[0.5, -0.5], [1.0, 0.0]], dtype="<f4").tobytes()
    assert pcm_to_float(stereo, "float32", 2).tolist() == pytest.approx([0.0, 0.5])
    with pytest.raises(AudioError) as err:
        pcm_to_float(b"\x00\x01\x02", "pcm16")
    assert err.value.status == 400 and isinstance(err.value, ApiError)
    tone = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)
    down = resample(tone, 48000, 16000)
    assert down.size == 16000 and abs(np.abs(np.fft.rfft(down)).argmax() - 440) <= 1


def test_reference_systems_setting_names_are_read_without_the_prefix(monkeypatch):
    from speechcore.settings import Settings
    for name in ("BACKEND_BASE_URL", "ALLOW_FRONTEND_BACKEND_AUTH"):   # the e2e apps set these for the session
        monkeypatch.delenv(f"SPEECH_{name}", raising=False)
    monkeypatch.setenv("BACKEND_BASE_URL", "http://chat.example:9000")
    monkeypatch.setenv("ALLOW_FRONTEND_BACKEND_AUTH", "true")
    monkeypatch.setenv("API_KEY", "plain")
    monkeypatch.setenv("SPEECH_API_KEY", "prefixed")
    s = Settings()
    assert s.backend_base_url == "http://chat.example:9000" and s.allow_frontend_backend_auth is True
    assert s.api_key == "prefixed"                     # the prefixed name wins
    assert Settings(default_registration_id="r1").default_registration_id == "r1"
