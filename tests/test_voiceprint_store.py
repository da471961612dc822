"""Voiceprint store and scoring without Ray: persistence, cascade deletes, concurrent writers, AS-norm."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from speechcore.errors import ApiError
from speechcore.speakers.scoring import Thresholds, equal_error_rate, score, threshold_at_far, voiceprint
from speechcore.speakers.store import VoiceprintStore

MODEL = "test-model"


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def enroll(store: VoiceprintStore, name: str, vec, family: str = "reachy", audio=None):
    return store.add_sample(family=family, model=MODEL, embedding=unit(vec), audio=audio, name=name)


def test_samples_accumulate_and_persist_across_reopen(tmp_path):
    store = VoiceprintStore(tmp_path)
    enroll(store, "alice", [1, 0, 0], audio=np.full(16000, 0.1, np.float32))
    speaker, path = enroll(store, "alice", [0.9, 0.1, 0], audio=np.full(8000, 0.1, np.float32))
    enroll(store, "bob", [0, 1, 0])
    store.close()
    reopened = VoiceprintStore(tmp_path)
    assert reopened.names() == ["alice", "bob"]
    alice = reopened.get(reopened.id_by_name("alice"), MODEL)
    assert len(alice.embeddings) == 2 and len(alice.audio_paths) == 2
    assert (tmp_path / path).stat().st_size > 16000
    assert reopened.get(alice.id, "other-model").embeddings == []


def test_delete_removes_samples_and_audio(tmp_path):
    store = VoiceprintStore(tmp_path)
    speaker, path = enroll(store, "alice", [1, 0, 0], audio=np.full(16000, 0.1, np.float32))
    assert store.delete(speaker.id)
    assert not (tmp_path / path).exists() and not (tmp_path / "speakers" / speaker.id).exists()
    assert store.sample_count(speaker.id) == 0 and store.names() == []
    assert not store.delete(speaker.id)


def test_voice_family_names_may_repeat_reachy_names_may_not(tmp_path):
    store = VoiceprintStore(tmp_path)
    a, _ = enroll(store, "Nguyen Van A", [1, 0, 0], family="voice")
    b, _ = enroll(store, "Nguyen Van A", [0, 1, 0], family="voice")
    assert a.id != b.id and store.names("voice") == ["Nguyen Van A"] * 2
    assert store.names() == []


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 200, "A1B2C3D4-0000-0000-0000-000000000000"])
def test_bad_ids_and_names_are_refused_before_touching_disk(tmp_path, bad):
    store = VoiceprintStore(tmp_path)
    with pytest.raises(ApiError) as err:
        store.delete(bad)
    assert err.value.status == 422
    if "/" in bad or not bad or len(bad) > 128:
        with pytest.raises(ApiError):
            enroll(store, bad, [1, 0, 0])


def _enroll_many(args):
    data_dir, worker, n = args
    store = VoiceprintStore(data_dir)
    rng = np.random.default_rng(worker)
    for _ in range(n):
        store.add_sample(family="reachy", model=MODEL, embedding=unit(rng.normal(size=8)),
                         audio=np.full(1600, 0.1, np.float32), name="shared")
    return worker


def test_concurrent_enrolments_from_several_processes_lose_nothing(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_enroll_many, [(str(tmp_path), w, 15) for w in range(4)])
    store = VoiceprintStore(tmp_path)
    sid = store.id_by_name("shared")
    assert store.names() == ["shared"]
    assert store.sample_count(sid) == 60
    assert len(list((tmp_path / "speakers" / sid).glob("*.wav"))) == 60


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
