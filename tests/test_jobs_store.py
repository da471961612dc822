"""The job store on SQLite and on a real PostgreSQL server (started from the Debian packages),
the same tests for both; and the pure result, export and matching rules."""
from __future__ import annotations

import json

import numpy as np
import pytest

from speechcore.jobs import results
from speechcore.jobs.matching import Candidate, Cohort, MatchPolicy, match
from speechcore.jobs.store import Job, JobStore
from speechcore.pipelines.diarization import Dialogue
from speechcore.schemas import Word


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = JobStore(url)
    yield db
    if request.param == "postgresql":
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM jobs")
    db.close()


def test_lifecycle_and_terminal_statuses_stick(store):
    store.create(Job("tr_a", "queued", "a.wav", "h1", "uploads/tr_a_a.wav", {"language": "en"}))
    assert store.set_status("tr_a", "converting", 0.1)
    job = store.get("tr_a")
    assert (job.status, job.progress, job.params) == ("converting", 0.1, {"language": "en"})
    assert store.complete("tr_a", {"id": "tr_a", "segments": [], "text": "grüße 你好"})
    assert json.loads(store.get("tr_a").result)["text"] == "grüße 你好"
    assert not store.set_status("tr_a", "failed", error="late")      # completed stays completed
    assert store.get("tr_a").status == "completed"
    assert store.get("tr_missing") is None


def test_dedup_prefers_completed_then_in_flight(store):
    store.create(Job("tr_1", "queued", "x.wav", "same"))
    assert store.find_reusable("same").id == "tr_1"
    store.create(Job("tr_2", "queued", "x.wav", "same"))
    store.complete("tr_2", {"id": "tr_2", "segments": []})
    assert store.find_reusable("same").id == "tr_2"
    store.set_status("tr_1", "failed", error="x")
    store.create(Job("tr_3", "failed", "y.wav", "other"))
    assert store.find_reusable("other") is None


def test_restart_fails_in_flight_jobs_only(store):
    store.create(Job("tr_q", "queued", "q.wav", "q"))
    store.create(Job("tr_t", "queued", "t.wav", "t"))
    store.set_status("tr_t", "transcribing", 0.5)
    store.create(Job("tr_c", "queued", "c.wav", "c"))
    store.complete("tr_c", {"id": "tr_c", "segments": []})
    assert store.fail_in_flight("Process restarted while job was in progress") == 2
    assert store.get("tr_t").status == "failed" and "restarted" in store.get("tr_t").error
    assert [j.id for j in store.completed()] == ["tr_c"]
    store.save_result("tr_c", {"id": "tr_c", "segments": [{"id": 0}]})
    assert json.loads(store.get("tr_c").result)["segments"] == [{"id": 0}]
    assert {j.id for j in store.recent()} == {"tr_q", "tr_t", "tr_c"}


def test_sql_input_is_data(store):
    evil = "x'; DROP TABLE jobs; --"
    store.create(Job("tr_evil", "queued", evil, evil))
    assert store.find_reusable(evil).filename == evil and store.get("tr_evil") is not None


# --- results and exports ---------------------------------------------------------------------------

def result_with(names):
    speaker_map = {lbl: {"matched_id": f"spk_{n}" if n else None, "matched_name": n, "similarity": 0.8,
                         "embedding_key": lbl} for lbl, n in names.items()}
    dialogues = [Dialogue("SPEAKER_00", 0.0, 1.5, "hello there", [Word(" hello", 0.0, 0.5, 0.9)]),
                 Dialogue("SPEAKER_01", 61.0, 62.25, "hi", []), Dialogue("SPEAKER_02", 63.0, 64.0, "bye", [])]
    segments = results.segments_from(dialogues, speaker_map)
    return {"id": "tr_x", "segments": segments, "speaker_map": speaker_map,
            "unique_speakers": results.unique_speakers(segments)}


def test_two_labels_with_one_name_are_told_apart():
    r = result_with({"SPEAKER_00": "Alice", "SPEAKER_01": "Alice", "SPEAKER_02": None})
    assert [s["speaker_name"] for s in r["segments"]] == ["Alice", "Alice (2)", "SPEAKER_02"]
    assert [s["speaker_label"] for s in r["segments"]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    assert r["segments"][0]["words"] == [{"word": "hello", "start": 0.0, "end": 0.5, "score": 0.9}]
    assert "words" not in r["segments"][1] and r["segments"][2]["speaker_id"] is None


def test_exports_and_segment_edit():
    r = result_with({"SPEAKER_00": "Alice", "SPEAKER_01": None, "SPEAKER_02": None})
    srt, _ = results.export(r, "srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\n[Alice] hello there\n")
    assert "00:01:01,000 --> 00:01:02,250\n[SPEAKER_01] hi" in srt
    assert results.export(r, "txt")[0].splitlines()[1] == "[01:01] SPEAKER_01: hi"
    assert results.export(r, "vtt")[0].startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n[Alice]")
    assert json.loads(results.export(r, "json")[0])["id"] == "tr_x"
    before = dict(r["speaker_map"])
    assert results.set_segment_speaker(r, 1, "Bob", None) and not results.set_segment_speaker(r, 9, "x", None)
    assert r["segments"][1]["speaker_name"] == "Bob" and r["speaker_map"] == before
    assert r["unique_speakers"] == ["Alice", "Bob", "SPEAKER_02"]


def test_repeated_ngrams_collapse_only_from_size_three():
    words = "I like like like this this is is it".split()
    keep = results.collapse_repeats(words, 3)
    assert [words[i] for i in keep] == ["I", "like", "this", "is", "it"]
    assert results.collapse_repeats(words, 2) == list(range(len(words)))
    words = "we go we go we go home".split()
    assert [words[i] for i in results.collapse_repeats(words, 3)] == ["we", "go", "home"]


# --- matching ---------------------------------------------------------------------------------------

def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_cosine_thresholds_relax_with_spread_but_not_below_floor():
    base = unit([1, 0, 0, 0])
    alice = Candidate("a", "Alice", [base])
    probe = unit([1, 0.75, 0, 0])          # cosine 0.8
    assert match(probe, [alice], np.zeros((0, 0)), MatchPolicy()).name == "Alice"
    weak = unit([1, 1.1, 0, 0])            # cosine ~0.67: below 0.70 for one sample
    m = match(weak, [alice], np.zeros((0, 0)), MatchPolicy())
    assert m.id is None and 0.6 < m.similarity < 0.7
    spread_out = Candidate("a", "Alice", [unit([1, 0.6, 0, 0]), unit([1, -0.6, 0, 0])])   # spread ~0.14
    assert match(weak, [spread_out], np.zeros((0, 0)), MatchPolicy()).name == "Alice"   # 0.65 threshold
    assert match(unit([1, 1.5, 0, 0]), [spread_out], np.zeros((0, 0)), MatchPolicy()).id is None   # floor


def test_asnorm_from_ten_cohort_rows_needs_a_margin():
    rng = np.random.default_rng(1)
    cohort = np.stack([unit(v) for v in rng.normal(size=(12, 16))])
    a, b = unit(rng.normal(size=16)), unit(rng.normal(size=16))
    cands = [Candidate("a", "A", [a, a]), Candidate("b", "B", [b, b])]
    assert match(a, cands, cohort, MatchPolicy()).name == "A"
    twin = [Candidate("a", "A", [a, a]), Candidate("b", "B", [a, a])]   # no margin between the two
    assert match(a, twin, cohort, MatchPolicy()).id is None


def test_cohort_rebuild_never_shrinks_automatically(tmp_path):
    jobs = []
    for i in range(3):
        d = tmp_path / f"tr_{i}"
        d.mkdir()
        np.save(d / "emb_SPEAKER_00.npy", np.ones(4, np.float32) * (i + 1))
        jobs.append(d)
    (jobs[2] / "emb_SPEAKER_01.npy").write_bytes(b"not numpy")
    cohort = Cohort(tmp_path / "asnorm_cohort.npy")
    assert cohort.rebuild(jobs, force=False) == (2, 1)
    assert cohort.rebuild(jobs[:1], force=False) == (2, 0)       # kept
    assert len(Cohort(tmp_path / "asnorm_cohort.npy")) == 2      # persisted
    assert cohort.rebuild(jobs[:1], force=True) == (1, 0)
