"""Ray-free units of streaming TTS: voice catalog and routing, collections store, streaming encoder,
first-piece splitting, and the streaming graph over a fake TTS deployment (order, early audio, cancel)."""
from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from graphs import speech
from speechcore.audio import StreamEncoder, decode_audio, wav_stream_header
from speechcore.errors import ApiError
from speechcore.schemas import Speech
from speechcore.text import split_text, stream_pieces
from speechcore.voices.catalog import COLLECTION_LANGUAGES, Catalog, voice_id
from speechcore.voices.collections import CollectionStore, check_langs
from tests.fakes import Handle, fake_services

VOICES = [{"name": "en_US-joe-medium", "language": "en", "engine": "piper", "sample_rate": 22050},
          {"name": "espeak-en", "language": "en", "engine": "espeak-ng", "sample_rate": 22050},
          {"name": "espeak-fr", "language": "fr", "engine": "espeak-ng", "sample_rate": 22050},
          {"name": "jf_alpha", "language": "ja", "engine": "kokoro", "sample_rate": 24000},
          {"name": "espeak-ja", "language": "ja", "engine": "espeak-ng", "sample_rate": 22050},
          {"name": "anna", "language": "en", "languages": ["en", "de", "ko"], "engine": "xtts", "sample_rate": 24000}]


def test_voice_ids_are_stable_uuids_per_engine_and_name():
    cat = Catalog.from_dicts(VOICES)
    again = Catalog.from_dicts(list(reversed(VOICES)))
    assert {v.name: v.id for v in cat.voices} == {v.name: v.id for v in again.voices}
    assert all(uuid.UUID(v.id).version == 5 for v in cat.voices)
    assert voice_id("piper", "x") != voice_id("espeak-ng", "x")


def test_routing_rules():
    cat = Catalog.from_dicts(VOICES)
    joe, fr = cat.by_name["en_US-joe-medium"], cat.by_name["espeak-fr"]
    assert cat.pick() is joe                                       # the default voice
    assert cat.pick(speaker_id=fr.id, language="en") is fr         # a speaker id wins over the language
    assert cat.pick(language="ja").name == "jf_alpha"              # Kokoro beats espeak-ng for Japanese
    assert cat.pick(language="en").name == "anna"                  # XTTS ranks first
    assert cat.pick(language="ko").name == "anna"                  # a multilingual voice covers ko
    assert cat.pick(collection={"fr": fr.id}, language="fr") is fr
    assert cat.pick(collection={"fr": fr.id}, language="ja").name == "jf_alpha"   # not in it: best voice
    assert cat.pick(voice=fr.id) is fr and cat.pick(voice="espeak-fr") is fr
    for bad, code in [({"speaker_id": str(uuid.uuid4())}, "speaker_not_found"), ({"voice": "nope"}, "voice_not_found"),
                      ({"language": "xx"}, "language_not_supported")]:
        with pytest.raises(ApiError) as err:
            cat.pick(**bad)
        assert err.value.status == 404 and err.value.code == code


def test_collections_store_crud_and_validation(tmp_path):
    store = CollectionStore(tmp_path)
    ids = {voice_id("piper", "a"), voice_id("espeak-ng", "b")}
    a, b = sorted(ids)
    langs = check_langs({"en": a.upper(), "fr": b}, ids)
    assert langs == {"en": a, "fr": b}
    item = store.create("Bot'; DROP TABLE collections; --", "u1", "desc", langs)
    assert store.get(item.id).name == "Bot'; DROP TABLE collections; --"          # data, never SQL
    assert [c.id for c in CollectionStore(tmp_path).list("u1")] == [item.id]       # persisted
    assert store.list("someone-else") == []
    updated = store.update(item.id, {"langs": {"ja": a}, "name": "New"})
    assert updated.langs == {"ja": a} and store.get(item.id).langs == {"ja": a} and updated.description == "desc"
    store.delete(item.id)
    with pytest.raises(ApiError) as err:
        store.get(item.id)
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        check_langs({"xx": a}, ids)
    assert err.value.status == 422 and "'xx'" in err.value.message
    with pytest.raises(ApiError) as err:
        check_langs({"en": "6f1c0000-0000-0000-0000-000000000000"}, ids)
    assert err.value.status == 422 and "6f1c0000" in err.value.message
    assert set(COLLECTION_LANGUAGES) == {"vi", "en", "fr", "ja", "ko", "zh", "ru"}


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "aac", "flac"])
def test_stream_encoder_emits_as_it_goes_and_decodes_whole(fmt):
    t = np.arange(24000 * 3) / 24000
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    enc = StreamEncoder(fmt, 24000)
    parts = [enc.encode(tone[i:i + 12000]) for i in range(0, tone.size, 12000)]
    assert sum(1 for p in parts if p) >= 3          # bytes leave before the end, not only at finish()
    decoded = decode_audio(b"".join(parts) + enc.finish(), 24000)
    assert abs(decoded.size / 24000 - 3.0) < 0.1
    peak = np.abs(np.fft.rfft(decoded[:24000])).argmax()
    assert abs(peak - 330) <= 2                     # the tone survives the codec


def test_streaming_wav_header_and_pcm():
    assert wav_stream_header(24000)[:4] == b"RIFF" and wav_stream_header(24000)[4:8] == b"\xff\xff\xff\xff"
    enc = StreamEncoder("pcm", 24000)
    assert enc.encode(np.array([0.5, -0.5], dtype=np.float32)) == np.array([16383, -16383], "<i2").tobytes()
    assert enc.finish() == b""


def test_first_piece_is_a_short_clause():
    text = ("Thank you for calling the support line of our company, your call matters to us, "
            "and an agent will be with you shortly. Please hold. We value your patience.")
    pieces = stream_pieces(text)
    assert pieces[0] == "Thank you for calling the support line of our company,"
    assert " ".join(pieces) == " ".join(split_text(text))      # nothing lost or reordered
    assert stream_pieces("Hi. Okay.") == ["Hi. Okay."]


class FakeTTS:
    """Records every piece it is asked for; each yields a tone whose frequency encodes the piece number."""

    def __init__(self):
        self.pieces: list[str] = []
        self.calls: list[str] = []

    async def voices(self):
        return VOICES[:3]

    async def synthesize(self, text, voice, speed, language):
        self.pieces.append(text)
        await asyncio.sleep(0)
        yield Speech(audio=np.full(2205, len(self.pieces) / 10, dtype=np.float32), sample_rate=22050)


def _svc():
    svc = fake_services()
    tts = FakeTTS()
    svc.handles["tts"] = Handle(tts)
    return svc, tts


def test_stream_speech_yields_in_order_at_the_asked_rate_and_starts_before_the_rest():
    svc, tts = _svc()

    async def run():
        out = []
        async for chunk in speech.stream_speech(svc, "One. Two is here, and more! Three?", sample_rate=24000):
            out.append((len(tts.pieces), chunk))
        return out
    out = asyncio.run(run())
    assert [n for n, _ in out] == list(range(1, len(tts.pieces) + 1))   # each chunk yielded before the next piece
    assert all(c.sample_rate == 24000 and c.audio.size == 2400 for _, c in out)
    assert [round(float(c.audio[100]), 2) for _, c in out] == [round(i / 10, 2) for i in range(1, len(out) + 1)]


def test_closing_the_stream_stops_synthesis():
    svc, tts = _svc()
    text = " ".join(f"Sentence number {i} is here." for i in range(30))

    async def run():
        stream = speech.stream_speech(svc, text)
        await anext(stream)
        await stream.aclose()          # what a disconnecting client does
    asyncio.run(run())
    assert len(tts.pieces) == 1


def test_stream_errors_surface_before_streaming():
    svc, tts = _svc()

    async def first(text, speed=1.0):
        voice = await speech.resolve_voice(svc)
        return await speech.stream_encoded(svc, text, voice, speed, "mp3", 24000)
    for text, speed, code in [(" ... ", 1.0, "empty_text"), ("hi", 9.0, "invalid_speed"), ("a\x00b", 1.0, "invalid_text")]:
        with pytest.raises(ApiError) as err:
            asyncio.run(first(text, speed))
        assert err.value.status == 400 and err.value.code == code
    assert tts.pieces == []
    with pytest.raises(ApiError) as err:
        asyncio.run(speech.resolve_voice(svc, collection_id="../../etc/passwd"))
    assert err.value.status == 404 and err.value.code == "collection_not_found"
