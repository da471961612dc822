"""Request values stay data: TTS text never reaches espeak-ng's command line, NaN/Inf samples
never reach a model or the voiceprint store (Ray-free; the HTTP side is in test_hostile.py)."""
from __future__ import annotations

import io
import shutil
import wave

import numpy as np
import pytest

from speechcore.audio import decode_audio, pcm_to_float
from speechcore.errors import ApiError, AudioError
from speechcore.speakers.schema import samples
from speechcore.speakers.store import VoiceprintStore


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    """A 32-bit float WAV (format tag 3), which can carry NaN and Inf."""
    data = samples.astype("<f4").tobytes()
    fmt = (b"fmt " + (16).to_bytes(4, "little") + (3).to_bytes(2, "little") + (1).to_bytes(2, "little")
           + rate.to_bytes(4, "little") + (rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little")
           + (32).to_bytes(2, "little"))
    body = b"WAVE" + fmt + b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_refuses_one_non_finite_sample(bad):
    samples = np.sin(np.arange(16000) / 10).astype(np.float32) * 0.3
    assert decode_audio(float_wav(samples)).size == 16000       # the same file without it decodes
    samples[8000] = bad
    with pytest.raises(AudioError) as err:
        decode_audio(float_wav(samples))
    assert err.value.status == 400 and err.value.code == "non_finite_samples"


def test_stream_frames_refuse_non_finite_float32():
    frame = np.zeros(1600, np.float32)
    frame[3] = np.nan
    with pytest.raises(AudioError) as err:
        pcm_to_float(frame.tobytes(), "float32", 1)
    assert err.value.code == "non_finite_samples"


def test_store_refuses_non_finite_embeddings_and_skips_old_ones(tmp_path):
    store = VoiceprintStore(tmp_path)
    good = np.array([1.0, 0.0, 0.0], np.float32)
    store.add_sample(family="reachy", model="m", embedding=good, audio=None, name="alice")
    with pytest.raises(ApiError) as err:
        store.add_sample(family="reachy", model="m", embedding=np.array([np.nan, 0, 0]), audio=None, name="alice")
    assert err.value.status == 422
    sid = store.id_by_name("alice")
    # A row poisoned before the check existed: reads skip it, so scores stay finite.
    with store._write() as db:
        db.execute(samples.insert().values(speaker_id=sid, model="m", dim=3, seconds=0, created_at=0,
                                           embedding=np.array([np.nan, 1, 0], "<f4").tobytes()))
    alice = store.get(sid, "m")
    assert len(alice.embeddings) == 1 and np.isfinite(np.stack(alice.embeddings)).all()
    assert np.isfinite(store.impostors("m")).all()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by make install")
def test_espeak_speaks_option_like_text_instead_of_reading_a_file(tmp_path):
    from speechcore.backends.piper_tts import ESPEAK_RATE, PiperTTS

    secret = tmp_path / "secret.txt"
    secret.write_text("This file holds a long secret sentence that must never be read aloud by the server. " * 8)
    tts = PiperTTS.__new__(PiperTTS)          # only the espeak path is exercised: no Piper model needed
    tts.espeak = shutil.which("espeak-ng")
    as_text = tts._espeak(f"-f{secret}", "fr", 1.0)
    as_file = tts._espeak(secret.read_text(), "fr", 1.0)
    seconds = as_text.audio.size / ESPEAK_RATE
    assert 0.2 < seconds < 15.0, seconds                      # the option text itself, spelled out
    assert as_file.audio.size / ESPEAK_RATE > 3 * seconds     # what reading the file would have given
