"""Anti-spoofing and voice profile endpoints under Ray Serve, on real and synthetic speech."""
from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from speechcore.antispoof.quality import assess
from speechcore.audio import decode_audio, wav_bytes
from tests.speech import CALL, FIXTURES, call_turns, librivox, piper_wav

READER = sorted(librivox())
MODES = ("bank_top_security", "bank_flex", "consumer")


def espeak_wav(text: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), text], check=True)
        return out.read_bytes()


def call_turn(speaker_index: int) -> bytes:
    call = decode_audio(CALL.read_bytes())
    turns = sorted((e - s, s, e) for spk, s, e in call_turns()
                   if spk == sorted({t[0] for t in call_turns()})[speaker_index])
    _, s, e = turns[-1]
    return wav_bytes(call[int(s * 16000):int(e * 16000)])


@pytest.fixture(scope="module")
def api(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client


def spoof(api, clips: list[tuple[str, bytes]], mode: str = "bank_flex") -> dict[str, dict]:
    r = api.post("/voice/anti-spoof", data={"mode": mode},
                 files=[("files", (n, io.BytesIO(d), "audio/wav")) for n, d in clips])
    assert r.status_code == 200, r.text
    return {x["file"]: x for x in r.json()["results"]}


def test_real_speech_is_real_and_tts_is_fake(api, handles):
    clips = [("reader.wav", READER[0].read_bytes()), ("reader2.wav", READER[2].read_bytes()),
             ("piper.wav", piper_wav(handles, "Please transfer the money to my savings account today.")),
             ("espeak.wav", espeak_wav("Please transfer the money to my savings account today."))]
    results = spoof(api, clips)
    for name in ("reader.wav", "reader2.wav"):
        assert results[name]["result"] == "real" and results[name]["is_real"] is True, results[name]
    for name in ("piper.wav", "espeak.wav"):
        assert results[name]["result"] == "fake" and results[name]["is_real"] is False, results[name]
    assert min(results[n]["score"] for n in ("reader.wav", "reader2.wav")) > \
        max(results[n]["score"] for n in ("piper.wav", "espeak.wav"))
    for r in results.values():
        assert 0 <= r["score"] <= 1 and 0 <= r["confidence"] <= 1 and r["qa_passed"] is True, r


def test_modes_are_ordered_thresholds_on_one_score(api):
    clip = [("reader.wav", READER[1].read_bytes())]
    by_mode = {m: spoof(api, clip, m)["reader.wav"] for m in MODES}
    assert len({r["score"] for r in by_mode.values()}) == 1
    assert by_mode["bank_top_security"]["threshold"] >= by_mode["bank_flex"]["threshold"] \
        >= by_mode["consumer"]["threshold"]
    assert api.post("/voice/anti-spoof", data={"mode": "paranoid"},
                    files=[("files", ("a.wav", io.BytesIO(READER[1].read_bytes()), "audio/wav"))]).status_code == 422


def test_quality_check_flags_clipping_noise_and_short_audio():
    speech = decode_audio(READER[0].read_bytes())
    assert assess(speech).passed
    clipped = assess(np.clip(speech * 50, -1, 1))
    assert not clipped.passed and any("clipped" in p for p in clipped.problems)
    noisy = assess(speech + np.random.default_rng(0).normal(0, 0.2, len(speech)).astype(np.float32))
    assert not noisy.passed and noisy.snr_db < 10
    assert not assess(speech[:8000]).passed


def test_anti_spoof_bad_upload_is_4xx(api):
    r = api.post("/voice/anti-spoof", files=[("files", ("x.wav", io.BytesIO(b"nope" * 100), "audio/wav"))])
    assert r.status_code == 400 and "x.wav" in r.json()["detail"]


def test_profile_reports_gender_from_a_real_model_and_the_rest_unavailable(api, handles):
    women = [call_turn(0), call_turn(1), (FIXTURES / "alsa" / "Front_Center.wav").read_bytes()]
    men = [READER[0].read_bytes(), piper_wav(handles, "This is a deep male voice reading a sentence aloud.")]
    for wav, expected in [(w, "female") for w in women] + [(m, "male") for m in men]:
        body = api.post("/voice/profile", files={"file": ("a.wav", io.BytesIO(wav), "audio/wav")}).json()
        gender = body["properties"]["gender"]
        assert max(gender, key=gender.get) == expected, body
        assert abs(sum(gender.values()) - 1) < 1e-3
        assert set(body["properties"]) == {"gender"}
        assert set(body["unavailable"]) == {"age", "emotion"}


def test_voice_profile_deployment_method_contract(handles):
    """The streaming SSAP path calls profile(audio) -> {property: {label: prob}}."""
    out = handles("voice_profile").profile.remote(decode_audio(READER[0].read_bytes())).result()
    assert set(out) == {"gender"} and set(out["gender"]) == {"female", "male"}
    assert all(isinstance(v, float) for v in out["gender"].values())
