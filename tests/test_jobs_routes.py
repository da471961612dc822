"""The job API in-process against fake deployments (tests/fakes.py), no Ray: auth exactly as
contracts §4 gives it, restart recovery, 503 when state cannot be stored, in-flight dedup."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from graphs import jobs as job_module
from graphs import routers, voiceprints
from graphs.ingress import app
from speechcore.audio import wav_bytes
from speechcore.jobs.store import Job, JobStore
from speechcore.settings import get_settings
from tests.audio_files import silence_wav
from tests.fakes import fake_services


@pytest.fixture
def env(monkeypatch, tmp_path):
    def set_env(**values: str) -> None:
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()

    for name in ("SPEECH_API_KEY", "API_KEY", "SPEECH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    set_env(SPEECH_DATA_DIR=str(tmp_path))
    reset()
    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()
    reset()


def reset() -> None:
    if job_module._service is not None:
        for task in job_module._service.tasks:
            task.cancel()
    job_module._service = None
    job_module.service_root.cache_clear()
    voiceprints.store.cache_clear()


@pytest.fixture
def client(env):
    routers.bind(fake_services())
    with TestClient(app) as c:
        yield c
    routers.bind(None)   # type: ignore[arg-type]


def test_api_key_exactly_as_the_reference(client, env):
    env(API_KEY="s3cret")
    r = client.get("/api/transcriptions")
    assert r.status_code == 401 and r.json() == {"detail": "Unauthorized"} and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/transcriptions", headers={"Authorization": "Bearer s3cret"}).json() == []
    assert client.get("/api/voiceprints", headers={"X-API-Key": "s3cret"}).json() == []
    assert client.get("/api/jobs/tr_x", headers={"X-API-Key": "wrong"}).status_code == 401
    assert [client.get(p).status_code for p in ("/", "/healthz", "/docs", "/openapi.json", "/static/app.js")] == [200] * 5
    assert client.get("/docsXYZ").status_code == 401 and client.get("/static").status_code == 401
    assert client.options("/api/transcribe").status_code != 401      # preflights pass


def test_jobs_in_flight_at_restart_are_failed(client, env):
    db = JobStore(job_module.database_url())
    db.create(Job("tr_old", "queued", "a.wav", "h"))
    db.set_status("tr_old", "transcribing", 0.4)
    db.create(Job("tr_done", "queued", "b.wav", "h2"))
    db.complete("tr_done", {"id": "tr_done", "segments": []})
    body = client.get("/api/jobs/tr_old").json()
    assert body == {"id": "tr_old", "status": "failed", "filename": "a.wav", "progress": 0.4,
                    "error": "Process restarted while job was in progress"}
    assert client.get("/api/jobs/tr_done").json()["result"] == {"id": "tr_done", "segments": []}


def test_corrupt_result_is_409(client):
    db = JobStore(job_module.database_url())
    db.create(Job("tr_bad", "queued", "a.wav", "h"))
    db.complete("tr_bad", {"id": "tr_bad", "segments": []})
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET result='{not json' WHERE id='tr_bad'")
    r = client.get("/api/transcriptions/tr_bad")
    assert r.status_code == 409 and r.json() == {"detail": "The stored result is corrupt"}
    assert client.get("/api/transcriptions").json() == []


def test_store_that_cannot_persist_is_503(client, env):
    env(SPEECH_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    r = client.post("/api/transcribe", files={"file": ("a.wav", io.BytesIO(silence_wav(1.0)), "audio/wav")})
    assert r.status_code == 503 and "store" in r.json()["detail"] and "psycopg" not in r.text


def test_in_flight_dedup_attaches_to_the_first_job(client):
    js = client.get("/api/transcriptions") and job_module._service
    js.start = lambda job_id: None            # keep the first job queued: no worker picks it up
    files = lambda: {"file": ("a.wav", io.BytesIO(silence_wav(1.0)), "audio/wav")}   # noqa: E731
    first = client.post("/api/transcribe", files=files(), data={"language": "en"}).json()
    second = client.post("/api/transcribe", files=files(), data={"language": "fr"}).json()
    assert first["status"] == "queued" and "deduplicated" not in first
    assert second == {"id": first["id"], "status": "queued", "deduplicated": True}
    assert len(list((js.root / "uploads").iterdir())) == 1    # the duplicate's bytes were not kept


def test_silence_completes_with_no_speakers_warning(client):
    job = client.post("/api/transcribe", files={"file": ("../x/quiet.wav", io.BytesIO(silence_wav(2.0)),
                                                         "audio/wav")}).json()
    for _ in range(100):
        body = client.get(f"/api/jobs/{job['id']}").json()
        if body["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert body["status"] == "completed", body
    assert body["filename"] == "quiet.wav"
    result = body["result"]
    assert result["warning"] == "no_speakers_detected" and result["segments"] == [] and result["speaker_map"] == {}
    assert result["params"]["language"] == "auto" and "no_repeat_ngram_size" not in result["params"]


def test_patient_transcription_waits_out_a_full_lane():
    """Jobs send their ASR requests in turn and retry a 429 after its Retry-After (a 10 min file is
    more bulk audio than the lane admits at once)."""
    import asyncio

    from graphs.transcription import _in_turn
    from speechcore.batching import Overloaded

    class Lane:
        calls: list[str] = []

        async def transcribe(self, request):
            self.calls.append(request)
            if len(self.calls) == 2:
                raise Overloaded("bulk", 0.01)
            return f"t{request}"

    lane = Lane()
    assert asyncio.run(_in_turn(lane, ["a", "b", "c"])) == ["ta", "tb", "tc"]
    assert lane.calls == ["a", "b", "b", "c"]


def test_postgresql_holds_the_jobs_and_one_voiceprint_library_for_every_family(client, env, pg_url, tmp_path):
    """A cluster's setting: one database URL, no SQLite file written; a voice enrolled through the
    speakers API is the job API's voiceprint (its own id format), and a delete there is seen here."""
    env(SPEECH_DATABASE_URL=pg_url)
    reset()
    noise = wav_bytes(np.random.default_rng(1).normal(0, 0.1, 32000).astype(np.float32))
    assert client.post("/speakers/ann/enroll", files={"file": ("a.wav", noise, "audio/wav")}).status_code == 200
    listed = client.get("/api/voiceprints").json()
    assert [(v["name"], v["sample_count"]) for v in listed] == [("ann", 1)] and listed[0]["id"].startswith("spk_")
    assert client.get("/api/transcriptions").json() == []
    assert client.delete(f"/api/voiceprints/{listed[0]['id']}").json() == {"ok": True}
    assert client.get("/speakers").json() == {"speakers": []}
    assert sorted(p.name for p in tmp_path.glob("*.sqlite3")) == []
