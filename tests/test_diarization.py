"""Diarization pipeline (Ray-free): pure steps, and real models (Silero VAD + Resemblyzer loaded
directly) on the pyannote call against its RTTM and on a two-speaker mix built from fixtures."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest

from speechcore.audio import decode_audio
from speechcore.pipelines import diarization as d
from speechcore.schemas import Segment, Word
from speechcore.spec import BackendSpec
from speechcore.vad import RegionOptions, speech_regions
from tests.mixes import two_speaker_mix
from tests.speech import CALL

PARAMS = d.DiarizationParams(threshold=0.3)   # the CPU profile's Resemblyzer setting


def test_windows_cover_regions_and_skip_tiny_ones():
    spans = d.windows([(0.0, 3.0), (5.0, 5.2), (6.0, 6.8)], PARAMS)
    assert spans[0] == (0.0, 1.5) and spans[-2][1] == 3.0
    assert (5.0, 5.2) not in spans and spans[-1] == (6.0, 6.8)


def test_cluster_estimates_and_bounds_the_speaker_count():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32))
    emb = np.concatenate([c + 0.05 * rng.normal(size=(10, 32)) for c in centres])
    assert len(set(d.cluster(emb, PARAMS))) == 3
    assert len(set(d.cluster(emb, replace(PARAMS, max_speakers=2)))) == 2
    assert len(set(d.cluster(emb, replace(PARAMS, min_speakers=4)))) == 4
    labels = d.cluster(emb, PARAMS)
    assert labels[0] == 0 and (labels[:10] == labels[0]).all() and (labels[10:20] == labels[10]).all()


def test_frame_turns_absorb_jitter_and_label_in_order():
    spans = [(0.0, 1.5), (0.75, 2.25), (1.5, 3.0), (2.25, 3.75), (3.0, 4.5)]
    turns = d.frame_turns([(0.0, 4.5)], spans, np.array([0, 0, 1, 1, 1]), PARAMS)
    assert [t.speaker for t in turns] == ["SPEAKER_00", "SPEAKER_01"]
    assert turns[0].start == 0.0 and turns[-1].end == 4.5 and 1.8 <= turns[0].end <= 2.0


def test_words_go_to_the_speaker_of_their_time():
    turns = [d.Turn("SPEAKER_00", 0.0, 2.0), d.Turn("SPEAKER_01", 2.0, 4.0)]
    words = [Word(" hello", 0.1, 0.5, 0.9), Word(" there", 0.6, 1.0, 0.9), Word(" hi", 2.2, 2.5, 0.8),
             Word(" back", 2.6, 3.0, 0.8)]
    out = d.dialogues([Segment(0, 0.1, 3.0, "hello there hi back", words=words)], turns)
    assert [(x.speaker, x.text) for x in out] == [("SPEAKER_00", "hello there"), ("SPEAKER_01", "hi back")]
    assert out[1].start == 2.2 and out[1].end == 3.0


def test_der_counts_miss_false_alarm_and_confusion():
    ref = [d.Turn("a", 0, 10), d.Turn("b", 10, 20)]
    assert d.diarization_error_rate(ref, [d.Turn("x", 0, 10), d.Turn("y", 10, 20)]) == 0.0
    swapped = d.diarization_error_rate(ref, [d.Turn("x", 0, 20)], collar=0.0)
    assert swapped == pytest.approx(0.5, abs=0.01)
    assert d.diarization_error_rate(ref, [], collar=0.0) == pytest.approx(1.0)
    assert d.parse_rttm("SPEAKER f 1 1.5 2.0 <NA> <NA> spk <NA> <NA>\n") == [d.Turn("spk", 1.5, 3.5)]


@lru_cache
def models():
    from speechcore.backends.resemblyzer_embedding import ResemblyzerEmbedding
    from speechcore.backends.silero_vad import SileroVAD
    return (SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad")),
            ResemblyzerEmbedding(BackendSpec(backend="resemblyzer", model="resemblyzer")))


def regions_of(audio):
    return speech_regions(models()[0].frame_probs(audio), len(audio) / 16000, RegionOptions())


def run(audio, params=PARAMS):
    async def embed(clip):
        return models()[1].embed_batch([clip])[0]
    return asyncio.run(d.diarize(audio, regions_of(audio), embed, params))


def test_call_two_speakers_against_its_rttm():
    audio = decode_audio(str(CALL))
    ref = d.parse_rttm(CALL.with_suffix(".rttm").read_text())
    found = run(audio)
    assert found.speakers == ["SPEAKER_00", "SPEAKER_01"]
    der = d.diarization_error_rate(ref, found.turns)
    floor = d.diarization_error_rate(ref, [d.Turn("x", s, e) for s, e in regions_of(audio)])
    assert der < 0.15 < floor
    assert set(found.embeddings) == {"SPEAKER_00", "SPEAKER_01"}


def test_built_mix_turns_and_bounds():
    audio, ref, order = two_speaker_mix(regions_of)
    found = run(audio)
    assert len(found.speakers) == 2
    assert d.diarization_error_rate(ref, found.turns) < 0.05
    first = found.turns[0].speaker   # A speaks first: every A turn carries its label
    assert all(d.speaker_at(t.start, t.end, found.turns) == first for t in ref if t.speaker == "A")
    assert len(run(audio, replace(PARAMS, max_speakers=1)).speakers) == 1
    assert len(run(audio, replace(PARAMS, min_speakers=3)).speakers) == 3


def test_pyannote_adapter_renumbers_labels_and_marks_overlap(monkeypatch):
    """The GPU-profile adapter's glue, with a stand-in for pyannote.audio's Pipeline (the real one
    needs torchaudio, which the CPU install cannot import; not run here)."""
    import sys
    import types

    class Seg:
        def __init__(self, start, end):
            self.start, self.end = start, end

    class Annotation:
        def itertracks(self, yield_label):
            return iter([(Seg(0.0, 2.0), "A", "spk7"), (Seg(1.5, 3.0), "B", "spk2"), (Seg(3.0, 4.0), "C", "spk7")])

        def get_overlap(self):
            return [Seg(1.5, 2.0)]

    calls = {}

    class Pipeline:
        @staticmethod
        def from_pretrained(path):
            calls["path"] = path
            return Pipeline()

        def __call__(self, audio, **bounds):
            calls["bounds"], calls["shape"] = bounds, tuple(audio["waveform"].shape)
            return Annotation()

    audio_mod = types.ModuleType("pyannote.audio")
    audio_mod.Pipeline = Pipeline
    monkeypatch.setitem(sys.modules, "pyannote", types.ModuleType("pyannote"))
    monkeypatch.setitem(sys.modules, "pyannote.audio", audio_mod)
    from speechcore.backends.pyannote_diarization import PyannoteDiarization

    turns, overlaps = PyannoteDiarization("/models/pipeline", device="cpu")(
        np.zeros(64000, np.float32), replace(PARAMS, max_speakers=2))
    assert calls == {"path": "/models/pipeline", "bounds": {"max_speakers": 2}, "shape": (1, 64000)}
    assert [(t.speaker, t.overlap) for t in turns] == [("SPEAKER_00", True), ("SPEAKER_01", True),
                                                       ("SPEAKER_00", False)]
    assert overlaps == [(1.5, 2.0)]
