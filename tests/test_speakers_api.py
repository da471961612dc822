"""Speaker recognition (reachy) and voice print (platform) APIs under Ray Serve, on real speech:
the LibriVox reader and the two women of the pyannote call, cut by the call's RTTM."""
from __future__ import annotations

import asyncio
import io
import uuid

import httpx
import numpy as np
import pytest

from speechcore.audio import decode_audio, wav_bytes
from speechcore.settings import get_settings
from speechcore.speakers.store import VoiceprintStore
from tests.speech import CALL, call_turns, librivox, piper_wav

READER = sorted(librivox())


def call_turn_wavs() -> dict[str, list[bytes]]:
    """The call's speakers -> WAV bytes of their turns of 2 s or more, longest first."""
    call = decode_audio(CALL.read_bytes())
    turns: dict[str, list[tuple[float, bytes]]] = {}
    for spk, s, e in call_turns():
        if e - s >= 2.0:
            turns.setdefault(spk, []).append((e - s, wav_bytes(call[int(s * 16000):int(e * 16000)])))
    return {spk: [w for _, w in sorted(t, reverse=True)] for spk, t in turns.items()}


TURNS = call_turn_wavs()
WOMAN_A, WOMAN_B = sorted(TURNS)


def upload(data: bytes, name: str = "clip.wav", field: str = "file"):
    return {field: (name, io.BytesIO(data), "audio/wav")}


def files(*clips: tuple[str, bytes], field: str = "files"):
    return [(field, (name, io.BytesIO(data), "audio/wav")) for name, data in clips]


@pytest.fixture(scope="module")
def api(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for name in client.get("/speakers").json()["speakers"]:
            client.delete(f"/speakers/{name}")
        yield client


def test_identify_with_nobody_enrolled_is_400(api):
    r = api.post("/identify", files=upload(b""))
    assert r.status_code == 400
    assert r.json() == {"detail": "No speakers enrolled. Please enroll speakers first."}


def test_enroll_identify_and_verify_pick_the_right_speaker(api):
    assert api.post("/speakers/reader/enroll", files=upload(READER[0].read_bytes())).json() == {
        "message": "Speaker 'reader' enrolled successfully", "embedding_size": 192}
    api.post("/speakers/reader/enroll", files=upload(READER[1].read_bytes())).raise_for_status()
    api.post("/speakers/woman_a/enroll", files=upload(TURNS[WOMAN_A][0])).raise_for_status()
    api.post("/speakers/woman_b/enroll", files=upload(TURNS[WOMAN_B][0])).raise_for_status()
    assert api.get("/speakers").json() == {"speakers": ["reader", "woman_a", "woman_b"]}

    for wav, expected in ((READER[3].read_bytes(), "reader"), (TURNS[WOMAN_A][1], "woman_a"),
                          (TURNS[WOMAN_B][1], "woman_b")):
        body = api.post("/identify", files=upload(wav)).json()
        assert body["speaker"] == expected and body["identified"] is True, body
        assert body["confidence"] >= body["threshold"] > 0.3   # ERes2Net's cosine scale (threshold 0.35)

    same = api.post("/verify", params={"name": "reader"}, files=upload(READER[4].read_bytes())).json()
    assert same["verified"] is True and same["speaker"] == "reader", same
    other = api.post("/verify", params={"name": "reader"}, files=upload(TURNS[WOMAN_A][1])).json()
    assert other["verified"] is False and other["confidence"] < other["threshold"], other
    assert same["confidence"] > other["confidence"] + 0.2


def test_stranger_is_not_identified(api, handles):
    """A Piper voice is nobody enrolled: best match stays under the threshold."""
    wav = piper_wav(handles, "Good morning, I would like to open an account please.")
    body = api.post("/identify", files=upload(wav)).json()
    assert body["identified"] is False and body["speaker"] is None, body


def test_enrolments_persist_in_the_database_with_audio(api):
    store = VoiceprintStore.from_settings(get_settings())
    sid = store.id_by_name("reader")
    speaker = store.get(sid, "eres2net")
    assert len(speaker.embeddings) == 2 and speaker.embeddings[0].shape == (192,)
    assert all(store.path_of(p).stat().st_size > 10_000 for p in speaker.audio_paths)


def test_concurrent_enrolments_of_one_name_keep_every_sample(api, base_url):
    async def enroll_all():
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
            rs = await asyncio.gather(*(client.post("/speakers/busy/enroll", files=upload(READER[i].read_bytes()))
                                        for i in range(5)))
        return [r.status_code for r in rs]

    assert asyncio.run(enroll_all()) == [200] * 5
    store = VoiceprintStore.from_settings(get_settings())
    assert store.sample_count(store.id_by_name("busy")) == 5


def test_delete_removes_speaker_samples_and_files(api):
    store = VoiceprintStore.from_settings(get_settings())
    sid = store.id_by_name("busy")
    assert api.delete("/speakers/busy").json() == {"message": "Speaker 'busy' deleted successfully"}
    assert store.sample_count(sid) == 0 and not (store.audio_root / sid).exists()
    r = api.delete("/speakers/busy")
    assert r.status_code == 404 and r.json() == {"detail": "Speaker 'busy' not found"}


@pytest.mark.parametrize("data,status", [(b"", 400), (b"this is not audio at all" * 50, 400),
                                         (wav_bytes(np.zeros(16000, np.float32)), 422),
                                         (wav_bytes(np.full(1600, 0.1, np.float32)), 422)])
def test_bad_audio_is_a_clear_4xx_everywhere(api, data, status):
    for path, params in (("/speakers/x/enroll", None), ("/identify", None), ("/verify", {"name": "reader"})):
        r = api.post(path, params=params, files=upload(data))
        assert r.status_code == status and isinstance(r.json()["detail"], str), (path, r.text)
    assert "x" not in api.get("/speakers").json()["speakers"]


def test_unknown_speaker_and_missing_fields(api):
    r = api.post("/verify", params={"name": "nobody"}, files=upload(b""))
    assert r.status_code == 404 and r.json() == {"detail": "Speaker 'nobody' not found"}
    assert api.post("/verify", files=upload(READER[0].read_bytes())).status_code == 422
    assert api.post("/speakers/a/enroll").status_code == 422


# --- voice print API (/voice/...) ---------------------------------------------------------------

def test_register_and_verify_accepts_the_speaker_and_rejects_others(api):
    r = api.post("/voice/register", files=upload(TURNS[WOMAN_A][0], "ref.wav"),
                 data={"name": "Woman A", "description": "caller"})
    body = r.json()
    assert body["status"] == "success" and uuid.UUID(body["speaker_id"])
    assert body["file_path"].startswith(f"speakers/{body['speaker_id']}/")
    assert (get_settings().data_dir / body["file_path"]).is_file()

    result = api.post(f"/voice/verify/{body['speaker_id']}",
                      files=files(("same.wav", TURNS[WOMAN_A][1]), ("other.wav", TURNS[WOMAN_B][1]),
                                  ("reader.wav", READER[2].read_bytes()))).json()
    verdicts = {x["file"]: x for x in result["results"]}
    assert verdicts["same.wav"]["verdict"] == "ACCEPT", verdicts
    assert verdicts["reader.wav"]["verdict"] == "REJECT", verdicts
    assert verdicts["same.wav"]["score"] > verdicts["other.wav"]["score"] > verdicts["reader.wav"]["score"]
    assert {x["scale"] for x in result["results"]} <= {"cosine", "as-norm"}
    assert result["reference"] == body["file_path"]
    for x in result["results"]:   # each tested clip is kept with the speaker's audio, as the document shows
        assert x["path"].startswith(f"speakers/{body['speaker_id']}/tests/"), x
        assert (get_settings().data_dir / x["path"]).stat().st_size > 16000


def test_verify_with_reference(api):
    body = api.post("/voice/verify_with_reference", files=[
        *files(("ref.wav", READER[0].read_bytes()), field="reference"),
        *files(("same.wav", READER[1].read_bytes()), ("other.wav", TURNS[WOMAN_B][0]))]).json()
    assert body["reference_file"] == "ref.wav"
    same, other = body["results"]
    assert same["verdict"] == "ACCEPT" and other["verdict"] == "REJECT", body
    assert same["threshold"] == other["threshold"]


def test_voice_verify_bad_ids_and_audio(api):
    assert api.post("/voice/verify/../../etc", files=files(("a.wav", READER[0].read_bytes()))).status_code in (404, 422)
    assert api.post("/voice/verify/not-a-uuid", files=files(("a.wav", READER[0].read_bytes()))).status_code == 422
    r = api.post(f"/voice/verify/{uuid.uuid4()}", files=files(("a.wav", READER[0].read_bytes())))
    assert r.status_code == 404 and "not found" in r.json()["detail"]
    r = api.post("/voice/register", files=upload(b"", "ref.wav"), data={"name": "n", "description": "d"})
    assert r.status_code == 400 and "ref.wav" in r.json()["detail"]


def test_scores_move_to_as_norm_once_the_cohort_is_large_enough(api):
    """Enrolling other voices (cards speaker, alsa voice) grows the impostor cohort past min_cohort."""
    fixtures = get_settings().fixtures_dir
    others = [("cards", p) for p in sorted((fixtures / "cards").glob("*.wav"))] + \
        [("alsa", p) for p in sorted((fixtures / "alsa").glob("*.wav")) if p.stem != "Noise"]
    for name, path in others:
        api.post(f"/speakers/{name}/enroll", files=upload(path.read_bytes())).raise_for_status()
    body = api.post("/voice/verify_with_reference", files=[
        *files(("ref.wav", READER[0].read_bytes()), field="reference"),
        *files(("same.wav", READER[1].read_bytes()), ("other.wav", TURNS[WOMAN_B][0]))]).json()
    same, other = body["results"]
    assert same["scale"] == other["scale"] == "as-norm" and same["cohort_size"] >= 10, body
    assert same["score"] > other["score"] + 2 and other["verdict"] == "REJECT", body
    assert same["threshold"] != 0.75  # the AS-norm threshold, not the cosine one
