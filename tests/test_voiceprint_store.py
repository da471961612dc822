"""Voiceprint store and scoring without Ray: persistence, cascade deletes, concurrent writers, AS-norm.

The store tests run twice, on the embedded SQLite file and on a real PostgreSQL
server (tests/pg_server.py), the same assertions for both."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from speechcore.errors import ApiError
from speechcore.speakers.scoring import Thresholds, equal_error_rate, score, threshold_at_far, voiceprint
from speechcore.speakers.store import VoiceprintStore

MODEL = "test-model"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    """None (SQLite in the test's folder) or the session's PostgreSQL, emptied after the test."""
    if request.param == "sqlite":
        yield None
        return
    pg = request.getfixturevalue("pg_url")
    yield pg
    store = VoiceprintStore(request.getfixturevalue("tmp_path"), pg)
    with store.engine.begin() as db:
        for table in ("samples", "cohort", "speakers"):
            db.exec_driver_sql(f"DELETE FROM {table}")
    store.close()


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def enroll(store: VoiceprintStore, name: str, vec, family: str = "reachy", audio=None):
    return store.add_sample(family=family, model=MODEL, embedding=unit(vec), audio=audio, name=name)


def test_samples_accumulate_and_persist_across_reopen(tmp_path, url):
    store = VoiceprintStore(tmp_path, url)
    enroll(store, "alice", [1, 0, 0], audio=np.full(16000, 0.1, np.float32))
    speaker, path = enroll(store, "alice", [0.9, 0.1, 0], audio=np.full(8000, 0.1, np.float32))
    enroll(store, "bob", [0, 1, 0])
    store.close()
    reopened = VoiceprintStore(tmp_path, url)
    assert reopened.names() == ["alice", "bob"]
    alice = reopened.get(reopened.id_by_name("alice"), MODEL)
    assert len(alice.embeddings) == 2 and len(alice.audio_paths) == 2
    assert (tmp_path / path).stat().st_size > 16000
    assert reopened.get(alice.id, "other-model").embeddings == []


def test_delete_removes_samples_and_audio(tmp_path, url):
    store = VoiceprintStore(tmp_path, url)
    speaker, path = enroll(store, "alice", [1, 0, 0], audio=np.full(16000, 0.1, np.float32))
    assert store.delete(speaker.id)
    assert not (tmp_path / path).exists() and not (tmp_path / "speakers" / speaker.id).exists()
    assert store.sample_count(speaker.id) == 0 and store.names() == []
    assert not store.delete(speaker.id)


def test_verified_clips_are_kept_bounded_and_deleted_with_the_speaker(tmp_path, url):
    store = VoiceprintStore(tmp_path, url)
    speaker, _ = enroll(store, "alice", [1, 0, 0], family="voice", audio=np.full(16000, 0.1, np.float32))
    paths = [store.keep_test_clips(speaker.id, [np.full(8000 * (i + 1), 0.1, np.float32)], keep=3)[0]
             for i in range(5)]
    assert all(p.startswith(f"speakers/{speaker.id}/tests/") for p in paths) and len(set(paths)) == 5
    kept = [p for p in paths if (tmp_path / p).is_file()]
    assert kept == paths[-3:]                              # the newest three, in order
    assert (tmp_path / kept[-1]).stat().st_size > 2 * 40000   # 2.5 s of 16-bit audio
    many = store.keep_test_clips(speaker.id, [np.full(8000, 0.1, np.float32)] * 4, keep=3)
    assert many[0] is None and all(many[1:])               # more than `keep` in one call: no dangling path
    assert store.keep_test_clips(speaker.id, [np.zeros(100, np.float32)], keep=0) == [None]
    assert len(store.get(speaker.id, MODEL).embeddings) == 1   # a verified clip is not a sample
    assert store.delete(speaker.id) and not (tmp_path / "speakers" / speaker.id).exists()
    assert store.keep_test_clips(speaker.id, [np.zeros(100, np.float32)], keep=3) == [None]   # gone: nothing left
    assert not (tmp_path / "speakers" / speaker.id).exists()
    with pytest.raises(ApiError):
        store.keep_test_clips("../etc", [np.zeros(100, np.float32)], keep=3)


def test_voice_family_names_may_repeat_reachy_names_may_not(tmp_path, url):
    store = VoiceprintStore(tmp_path, url)
    a, _ = enroll(store, "Nguyen Van A", [1, 0, 0], family="voice")
    b, _ = enroll(store, "Nguyen Van A", [0, 1, 0], family="voice")
    assert a.id != b.id and store.names("voice") == ["Nguyen Van A"] * 2
    assert store.names() == []


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 200, "A1B2C3D4-0000-0000-0000-000000000000"])
def test_bad_ids_and_names_are_refused_before_touching_disk(tmp_path, url, bad):
    store = VoiceprintStore(tmp_path, url)
    with pytest.raises(ApiError) as err:
        store.delete(bad)
    assert err.value.status == 422
    if "/" in bad or not bad or len(bad) > 128:
        with pytest.raises(ApiError):
            enroll(store, bad, [1, 0, 0])


def test_control_characters_in_a_description_are_refused_on_both_databases(tmp_path, url):
    store = VoiceprintStore(tmp_path, url)
    for bad in ("a\x00b", "bell\x07", "x" * 1001):
        with pytest.raises(ApiError) as err:
            store.add_sample(family="voice", model=MODEL, embedding=unit([1, 0]), audio=None, name="n", description=bad)
        assert err.value.status == 422 and err.value.code == "invalid_description"
    speaker, _ = store.add_sample(family="voice", model=MODEL, embedding=unit([1, 0]), audio=None, name="n",
                                  description="line one\nline two\tand ünïcode 你好")
    assert store.get(speaker.id, MODEL).description == "line one\nline two\tand ünïcode 你好"


def _enroll_many(args):
    data_dir, url, worker, n = args
    store = VoiceprintStore(data_dir, url)
    rng = np.random.default_rng(worker)
    for _ in range(n):
        store.add_sample(family="reachy", model=MODEL, embedding=unit(rng.normal(size=8)),
                         audio=np.full(1600, 0.1, np.float32), name="shared")
    return worker


def test_concurrent_enrolments_from_several_processes_lose_nothing(tmp_path, url):
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_enroll_many, [(str(tmp_path), url, w, 15) for w in range(4)])
    store = VoiceprintStore(tmp_path, url)
    sid = store.id_by_name("shared")
    assert store.names() == ["shared"]
    assert store.sample_count(sid) == 60
    assert len(list((tmp_path / "speakers" / sid).glob("*.wav"))) == 60


def test_reads_renames_cohort_and_reembedding_agree_on_both_databases(tmp_path, url):
    store = VoiceprintStore(tmp_path, url)
    alice, _ = enroll(store, "alice", [1, 0, 0], audio=np.full(16000, 0.1, np.float32))
    enroll(store, "alice", [0.9, 0.1, 0])
    bob, _ = enroll(store, "Bob", [0, 1, 0], family="voice", audio=np.full(8000, 0.1, np.float32))
    assert [(s["name"], s["samples"]) for s in store.summaries("reachy")] == [("alice", 2)]
    assert store.count("voice") == 1 and store.count("reachy") == 1
    assert store.rename(bob.id, "Robert") and store.names("voice") == ["Robert"]
    assert not store.rename("00000000-0000-4000-8000-000000000000", "nobody")
    assert store.add_cohort(MODEL, [unit([0, 0, 1]), unit([1, 1, 1])], source="test") == 2
    assert store.impostors(MODEL).shape == (5, 3)                    # cohort + every sample
    assert store.impostors(MODEL, exclude_speaker=alice.id).shape == (3, 3)
    store.drop_cohort(MODEL)
    assert store.cohort_size(MODEL) == 0
    todo, no_audio = store.samples_to_reembed("new-model")
    assert [(sid, seconds) for sid, _, seconds in todo] == [(alice.id, 1.0), (bob.id, 0.5)] and no_audio == 1
    store.add_embedding(alice.id, "new-model", unit([1, 0]), todo[0][1], 1.0)
    assert [t[0] for t in store.samples_to_reembed("new-model")[0]] == [bob.id]
    assert store.get(alice.id, "new-model").audio_paths == [todo[0][1]]


def test_a_database_written_by_the_first_schema_opens_unchanged(tmp_path):
    """voiceprints.sqlite3 files from before the SQLAlchemy store (hand-written DDL, user_version 1)."""
    import sqlite3

    legacy = sqlite3.connect(tmp_path / "voiceprints.sqlite3")
    legacy.executescript(LEGACY_SCHEMA)
    legacy.execute("INSERT INTO speakers VALUES ('0b0e7c4e-8d1a-4d57-9a57-3c1f1d2b0a11', 'reachy', 'old', '', 1, 1)")
    legacy.execute("INSERT INTO samples (speaker_id, model, dim, embedding, seconds, created_at) VALUES "
                   "('0b0e7c4e-8d1a-4d57-9a57-3c1f1d2b0a11', ?, 3, ?, 1, 1)", (MODEL, unit([1, 0, 0]).tobytes()))
    legacy.commit()
    legacy.close()
    store = VoiceprintStore(tmp_path)
    assert store.names() == ["old"] and len(store.get(store.id_by_name("old"), MODEL).embeddings) == 1
    speaker, path = enroll(store, "old", [0, 1, 0], audio=np.full(1600, 0.1, np.float32))
    assert len(speaker.embeddings) == 2 and path.endswith("/2.wav")
    assert store.delete(speaker.id) and store.sample_count(speaker.id) == 0


LEGACY_SCHEMA = """
CREATE TABLE speakers (id TEXT PRIMARY KEY, family TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE UNIQUE INDEX speakers_reachy_name ON speakers(name) WHERE family = 'reachy';
CREATE TABLE samples (id INTEGER PRIMARY KEY AUTOINCREMENT,
    speaker_id TEXT NOT NULL REFERENCES speakers(id) ON DELETE CASCADE, model TEXT NOT NULL,
    dim INTEGER NOT NULL, embedding BLOB NOT NULL, audio_path TEXT, seconds REAL NOT NULL, created_at REAL NOT NULL);
CREATE TABLE cohort (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, embedding BLOB NOT NULL,
    source TEXT NOT NULL DEFAULT '');
PRAGMA user_version=1;
"""


def test_scores_switch_to_as_norm_once_the_cohort_is_large_enough():
    rng = np.random.default_rng(0)
    target = unit(rng.normal(size=32))
    same = unit(target + 0.05 * rng.normal(size=32))
    other = unit(rng.normal(size=32))
    thresholds = Thresholds(cosine=0.7, as_norm=3.0, min_cohort=10, top_n=50)
    small = np.stack([unit(rng.normal(size=32)) for _ in range(5)])
    s = score(target, same, small, thresholds)
    assert s.scale == "cosine" and s.threshold == 0.7 and s.accepted
    cohort = np.stack([unit(rng.normal(size=32)) for _ in range(200)])
    genuine, impostor = score(target, same, cohort, thresholds), score(target, other, cohort, thresholds)
    assert genuine.scale == "as-norm" and genuine.cohort_size == 200
    assert genuine.score > 3.0 > impostor.score and genuine.accepted and not impostor.accepted
    assert impostor.score < 0  # a random impostor sits below the top of the cohort


def test_voiceprint_is_normalised_mean_and_eer_helpers():
    vp = voiceprint([unit([1, 0]), unit([0, 1])])
    assert np.allclose(vp, unit([1, 1]))
    eer, thr = equal_error_rate([0.9, 0.8, 0.7, 0.4], [0.1, 0.2, 0.5, 0.3])
    assert eer == 0.25 and 0.4 <= thr <= 0.5
    assert equal_error_rate([0.9, 0.8], [0.1, 0.2])[0] == 0.0
    t = threshold_at_far([0.1, 0.2, 0.3, 0.4], 0.0)
    assert t > 0.4
