"""The job API (/api/*, seeds/voscript-job-api.md + contracts §4), /transcribe-with-property and the
web UI, under Ray Serve over real HTTP, on a two-speaker conversation built from real recordings.
Calls are made the way the reference's client makes them: both auth headers, polling every 2 s."""
from __future__ import annotations

import io
import re
import time
from functools import lru_cache

import httpx
import pytest

from speechcore.audio import decode_audio, wav_bytes
from speechcore.spec import BackendSpec
from speechcore.vad import RegionOptions, speech_regions
from tests.mixes import READER, two_speaker_mix

HEADERS = {"Authorization": "Bearer test-key", "X-API-Key": "test-key"}   # no key set: both are ignored
LIFECYCLE = ["queued", "converting", "denoising", "transcribing", "identifying", "completed"]


@lru_cache
def card_suit(text: str) -> bool:
    """The cards speaker's words ("four queen of clubs"; whisper-base hears clubs as cloves now and then)."""
    return re.search(r"\b(clubs|cloves|spades|hearts|diamonds)\b", text.lower()) is not None


def mix():
    from speechcore.backends.silero_vad import SileroVAD
    vad = SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad"))
    audio, turns, _ = two_speaker_mix(lambda a: speech_regions(vad.frame_probs(a), len(a) / 16000, RegionOptions()))
    return wav_bytes(audio), turns


@pytest.fixture(scope="module")
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=120, headers=HEADERS) as c:
        yield c


def submit(client, data: bytes, name: str = "meeting.wav", **fields):
    r = client.post("/api/transcribe", files={"file": (name, io.BytesIO(data), "audio/wav")},
                    data={k: str(v) for k, v in fields.items()})
    assert r.status_code == 200, r.text
    return r.json()


def wait(client, job_id: str, limit_s: float = 600) -> tuple[dict, list[str]]:
    seen, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        body = client.get(f"/api/jobs/{job_id}").json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in ("completed", "failed"):
            return body, seen
        time.sleep(2)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {limit_s} s")


@pytest.fixture(scope="module")
def done(client):
    data, _ = mix()
    queued = submit(client, data, "../../etc/meeting.wav", language="en", no_repeat_ngram_size=3)
    assert queued["status"] == "queued" and queued["id"].startswith("tr_")
    body, seen = wait(client, queued["id"])
    assert body["status"] == "completed", body
    assert seen == [s for s in LIFECYCLE if s in seen] and "denoising" not in seen
    return body


def test_completed_job_has_two_speakers_and_the_words(done):
    result = done["result"]
    assert done["filename"] == result["filename"] == "meeting.wav"
    assert result["status"] == "completed" and result["language"] == "en"
    segs = result["segments"]
    assert [s["id"] for s in segs] == list(range(len(segs)))
    assert all(s["start"] < s["end"] and s["speaker_name"] and s["speaker_label"] for s in segs)
    labels = [s["speaker_label"] for s in segs]
    assert sorted(set(labels)) == ["SPEAKER_00", "SPEAKER_01"] == sorted(result["speaker_map"])
    assert result["unique_speakers"] == ["SPEAKER_00", "SPEAKER_01"]   # nobody enrolled yet
    text_of = {lbl: " ".join(s["text"] for s in segs if s["speaker_label"] == lbl).lower() for lbl in set(labels)}
    cards = [lbl for lbl, t in text_of.items() if card_suit(t)]
    assert len(cards) == 1 and not card_suit(text_of[({*labels} - {cards[0]}).pop()])
    words = [w for s in segs for w in s.get("words", [])]
    assert words and all(0 <= w["score"] <= 1 and w["start"] <= w["end"] for w in words)
    assert result["params"] == {"language": "en", "denoise_model": "none", "snr_threshold": 10.0,
                                "voiceprint_threshold": 0.35, "min_speakers": 0, "max_speakers": 0,
                                "no_repeat_ngram_size": 3}
    assert {a["filename"] for a in result["artifacts"]["stable"]} == {"result.json", "emb_SPEAKER_00.npy",
                                                                       "emb_SPEAKER_01.npy"}
    assert result["alignment"]["status"] == "succeeded"


def test_same_bytes_are_deduplicated_whatever_the_fields(client, done):
    again = submit(client, mix()[0], "other.wav", language="de")
    assert again == {"id": done["id"], "status": "completed", "deduplicated": True}


def test_listing_audio_and_exports(client, done):
    listed = {t["id"]: t for t in client.get("/api/transcriptions").json()}
    assert listed[done["id"]]["speaker_count"] == 2
    assert listed[done["id"]]["segment_count"] == len(done["result"]["segments"])
    assert client.get(f"/api/transcriptions/{done['id']}").json() == done["result"]
    assert client.get(f"/api/transcriptions/{done['id']}/audio").content == mix()[0]
    srt = client.get(f"/api/export/{done['id']}")
    first = done["result"]["segments"][0]
    assert srt.status_code == 200 and f"[{first['speaker_name']}] {first['text']}" in srt.text
    txt = client.get(f"/api/export/{done['id']}", params={"format": "txt"}).text
    assert txt.splitlines()[0] == f"[00:00] {first['speaker_name']}: {first['text']}"
    assert client.get(f"/api/export/{done['id']}", params={"format": "vtt"}).text.startswith("WEBVTT")
    assert client.get(f"/api/export/{done['id']}", params={"format": "json"}).json()["id"] == done["id"]
    bad = client.get(f"/api/export/{done['id']}", params={"format": "doc"})
    assert bad.status_code == 400 and "srt" in bad.json()["detail"]


def test_ids_are_validated_before_anything_is_read(client):
    assert client.get("/api/jobs/tr_nope").status_code == 404
    for path in ("/api/jobs/notanid", "/api/jobs/tr_..%2F..%2Fetc", "/api/transcriptions/tr_a.b/audio",
                 "/api/voiceprints/bob", "/api/export/..%2Fx"):
        r = client.get(path)
        assert r.status_code in (404, 422) and "Traceback" not in r.text, path
    assert client.get("/api/jobs/bad!id").status_code == 422
    assert client.get("/api/voiceprints/spk_unknown").status_code == 404


def test_enrol_match_rename_edit_delete(client, done):
    result = done["result"]
    reader = next(lbl for lbl in result["speaker_map"] if all(
        not card_suit(s["text"]) for s in result["segments"] if s["speaker_label"] == lbl))
    form = {"tr_id": done["id"], "speaker_label": reader, "speaker_name": "Reader"}
    created = client.post("/api/voiceprints/enroll", data=form).json()
    assert created["action"] == "created" and created["speaker_id"].startswith("spk_")
    merged = client.post("/api/voiceprints/enroll", data=form).json()
    assert merged == {"action": "updated", "speaker_id": created["speaker_id"]}
    assert client.post("/api/voiceprints/enroll", data={**form, "speaker_label": "SPEAKER_09"}).status_code == 404
    assert client.post("/api/voiceprints/enroll", data={**form, "speaker_id": "bad id"}).status_code == 422
    prints = {p["id"]: p for p in client.get("/api/voiceprints").json()}
    assert prints[created["speaker_id"]]["name"] == "Reader" and prints[created["speaker_id"]]["sample_count"] == 2
    # a new recording of the reader alone is matched to the voiceprint
    solo = submit(client, READER[3].read_bytes(), "solo.wav", language="en")
    body, _ = wait(client, solo["id"])
    assert body["result"]["unique_speakers"] == ["Reader"], body["result"]["speaker_map"]
    seg = body["result"]["segments"][0]
    assert seg["speaker_id"] == created["speaker_id"] and seg["similarity"] >= 0.6
    # manual segment edit
    url = f"/api/transcriptions/{done['id']}/segments/0/speaker"
    assert client.put(url, data={"speaker_name": "Reader", "speaker_id": created["speaker_id"]}).json() == {"ok": True}
    edited = client.get(f"/api/transcriptions/{done['id']}").json()
    assert edited["segments"][0]["speaker_name"] == "Reader" and "Reader" in edited["unique_speakers"]
    assert edited["speaker_map"] == result["speaker_map"]
    assert client.put(url, data={"speaker_name": "X", "speaker_id": "nope"}).status_code == 422
    assert client.put(url, data={"speaker_name": "X", "speaker_id": "spk_unknown"}).status_code == 404
    assert client.put(f"/api/transcriptions/{done['id']}/segments/999/speaker",
                      data={"speaker_name": "X"}).status_code == 404
    assert client.put("/api/transcriptions/tr_nope/segments/0/speaker", data={"speaker_name": "X"}).status_code == 404
    # rename, cohort, delete
    sid = created["speaker_id"]
    assert client.put(f"/api/voiceprints/{sid}/name", data={"name": "Marianne"}).json() == {"ok": True}
    assert client.get(f"/api/voiceprints/{sid}").json()["name"] == "Marianne"
    cohort = client.post("/api/voiceprints/rebuild-cohort").json()
    assert cohort["cohort_size"] >= 3 and cohort["skipped"] == 0 and cohort["saved_to"].endswith(".npy")
    assert client.delete(f"/api/voiceprints/{sid}").json() == {"ok": True}
    assert client.delete(f"/api/voiceprints/{sid}").status_code == 404


def test_bad_uploads_fail_cleanly(client):
    junk = submit(client, b"this is not audio at all" * 100, "notes.txt")
    body, _ = wait(client, junk["id"], 120)
    assert body["status"] == "failed" and body["error"] and "Traceback" not in body["error"]
    r = client.post("/api/transcribe", files={"file": ("x.wav", io.BytesIO(b""), "audio/wav")},
                    data={"no_repeat_ngram_size": "three"})
    assert r.status_code == 422
    r = client.post("/api/transcribe", files={"file": ("x.wav", io.BytesIO(b"\0" * 100), "audio/wav")},
                    data={"denoise_model": "deepfilternet"})
    assert r.status_code == 400 and "deepfilternet" in r.json()["detail"]
    big = client.post("/api/transcribe", files={"file": ("big.wav", io.BytesIO(b"\0" * (4 * 1024 * 1024)), "audio/wav")})
    assert big.status_code == 413 and big.json() == {"detail": "Upload exceeds MAX_UPLOAD_BYTES (3145728 bytes)"}


def test_transcribe_with_property_gives_diarized_dialogues(client):
    data, ref = mix()
    r = client.post("/transcribe-with-property", files={"file": ("mix.wav", io.BytesIO(data), "audio/wav")},
                    data={"language": "en"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["processing_time"] > 0 and len(body["speakers"]) == 2
    dialogues = body["dialogues"]
    assert {d["speaker"] for d in dialogues} == set(body["speakers"])
    assert all(d["start"] < d["end"] and d["text"] and d["words"] for d in dialogues)
    clubs = {d["speaker"] for d in dialogues if card_suit(d["text"])}
    assert len(clubs) == 1
    reader_first = ref[0].speaker == "A" and dialogues[0]["speaker"] not in clubs
    assert reader_first


def test_web_ui_is_served(client):
    page = httpx.get(str(client.base_url) + "/")
    assert page.status_code == 200 and "/api/transcribe" in httpx.get(str(client.base_url) + "/static/app.js").text
    assert "<h1>Transcription jobs</h1>" in page.text
