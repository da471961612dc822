"""File transcription over HTTP: platform /transcribe, gateway /v1/speech/*, OpenAI /v1/audio/*."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from speechcore.textmetrics import wer
from tests.audio_files import encode_container, header_only_wav, silence_wav
from tests.speech import CALL, call_transcript, call_turns, librivox

CLIP, REF = next(iter(librivox().items()))


def post(base_url: str, path: str, field: str, data: bytes, name: str = "audio.wav", **form):
    return httpx.post(f"{base_url}{path}", files={field: (name, data)}, data=form, timeout=120)


# --- platform: POST /transcribe ---------------------------------------------------------------

@pytest.mark.parametrize("container", ["wav", "mp3", "flac", "ogg", "m4a", "webm"])
def test_platform_transcribes_every_accepted_container(base_url, container):
    data = CLIP.read_bytes() if container == "wav" else encode_container(CLIP.read_bytes(), container)
    r = post(base_url, "/transcribe", "file", data, f"clip.{container}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filename"] == f"clip.{container}"
    assert wer(REF, body["text"]) <= 0.15, body["text"]
    assert body["duration"] == pytest.approx(7.1, abs=0.1)
    seg = body["segments"][0]
    assert {"id", "start", "end", "text", "tokens", "avg_logprob", "no_speech_prob"} <= set(seg)
    assert 0 <= seg["start"] < seg["end"] <= body["duration"] + 0.1 and seg["tokens"]
    assert body["processing_time"] > 0


def test_platform_long_call_is_split_on_speech_regions(base_url):
    body = post(base_url, "/transcribe", "file", CALL.read_bytes(), language="en").json()
    first_speech = min(s for _, s, _ in call_turns())
    assert body["segments"][0]["start"] >= first_speech - 0.5   # the silent first 6.7 s is not decoded
    assert len(body["segments"]) >= 3
    starts = [s["start"] for s in body["segments"]]
    assert starts == sorted(starts) and body["segments"][-1]["end"] <= 30.1
    assert wer(call_transcript(), body["text"]) <= 0.35, body["text"]


def test_platform_model_choice_and_unknown_model(base_url):
    tiny = post(base_url, "/transcribe", "file", CLIP.read_bytes(), model="whisper-tiny.en").json()
    assert wer(REF, tiny["text"]) <= 0.2
    r = post(base_url, "/transcribe", "file", CLIP.read_bytes(), model="whisper-huge")
    assert r.status_code == 404 and "whisper-huge" in r.json()["detail"]
    r = post(base_url, "/transcribe", "file", CLIP.read_bytes(), model="whisper-tiny.en", language="fr")
    assert r.status_code == 400 and "supported" in r.json()["detail"]


BAD_INPUTS = {
    "empty": (b"", 400),
    "not audio": (b"this is a text file, not audio\n" * 20, 400),
    "unsupported container": (b"%PDF-1.4\n" + bytes(range(256)) * 40, 400),
    "zero-length wav": (header_only_wav(), 422),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
@pytest.mark.parametrize("path,field,shape", [("/transcribe", "file", "detail"),
                                              ("/v1/speech/transcribe", "audio", "gateway")])
def test_bad_uploads_get_a_clear_4xx_in_the_family_shape(base_url, case, path, field, shape):
    data, status = BAD_INPUTS[case]
    r = post(base_url, path, field, data)
    assert r.status_code == status, r.text
    body = r.json()
    message = body["detail"] if shape == "detail" else body["error"]["message"]
    assert isinstance(message, str) and len(message) > 10
    if shape == "gateway":
        assert body["error"]["code"] in {"empty_audio", "invalid_audio_format", "no_audio", "no_speech"}


@pytest.mark.parametrize("path,field", [("/transcribe", "file"), ("/v1/speech/transcribe", "audio")])
def test_silence_is_200_with_empty_text_and_no_segments(base_url, path, field):
    r = post(base_url, path, field, silence_wav(3.0), language="en")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "" and body["segments"] == []
    assert body.get("duration", 0) == 3.0 or body.get("duration_ms") == 3000
    if path.startswith("/v1/speech"):
        assert body["confidence"] == 0.0 and body["language"] == "en"


def test_truncated_file_transcribes_the_part_that_is_there(base_url):
    data = CLIP.read_bytes()
    body = post(base_url, "/transcribe", "file", data[: len(data) // 2]).json()
    assert body["duration"] == pytest.approx(3.55, abs=0.1)
    assert "dashwood" in body["text"].lower()


def test_absurd_language_is_refused(base_url):
    r = post(base_url, "/v1/speech/transcribe", "audio", CLIP.read_bytes(), language="klingon-xx")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_language"


def test_upload_over_the_limit_is_413_with_and_without_content_length(base_url):
    from speechcore.settings import get_settings

    limit = get_settings().max_upload_bytes
    r = post(base_url, "/v1/speech/transcribe", "audio", b"\0" * (limit + 10))
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"

    def chunked():   # no Content-Length: the limit is enforced while the body streams in
        boundary = b"--x\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\n"
        yield boundary
        for _ in range(limit // (1 << 20) + 2):
            yield b"\0" * (1 << 20)
        yield b"\r\n--x--\r\n"

    r = httpx.post(f"{base_url}/v1/speech/transcribe", content=chunked(),
                   headers={"content-type": "multipart/form-data; boundary=x"}, timeout=120)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert httpx.get(f"{base_url}/health").status_code == 200


# --- gateway: /v1/speech/transcribe, /v1/speech/models ------------------------------------------

def test_gateway_transcribe_with_word_timestamps(base_url):
    r = post(base_url, "/v1/speech/transcribe", "audio", CLIP.read_bytes(), language="en", word_timestamps="true")
    body = r.json()
    assert r.status_code == 200 and wer(REF, body["text"]) <= 0.15
    assert body["language"] == "en" and body["duration_ms"] == 7100
    assert 0.5 < body["confidence"] <= 1.0
    words = [w for s in body["segments"] for w in s["words"]]
    assert [w["word"].lower().strip(".,") for w in words][:3] == ["and", "mr", "john"]
    assert all(w["start_ms"] <= w["end_ms"] and 0 <= w["confidence"] <= 1 for w in words)
    assert [w["start_ms"] for w in words] == sorted(w["start_ms"] for w in words)
    plain = post(base_url, "/v1/speech/transcribe", "audio", CLIP.read_bytes()).json()
    assert "words" not in plain["segments"][0] and plain["language"] == "en"   # auto-detected


def test_gateway_missing_audio_field_is_400_in_gateway_shape(base_url):
    r = httpx.post(f"{base_url}/v1/speech/transcribe", data={"language": "en"})
    assert r.status_code == 400 and "audio" in r.json()["error"]["message"]


def test_gateway_lists_the_real_models(base_url):
    models = {m["name"]: m for m in httpx.get(f"{base_url}/v1/speech/models").json()["models"]}
    assert set(models) == {"whisper-base", "whisper-tiny.en", "moonshine-base"}
    assert models["whisper-tiny.en"]["languages"] == models["moonshine-base"]["languages"] == ["en"]
    assert {"en", "de", "fr", "cs"} <= set(models["whisper-base"]["languages"])
    assert all(m["loaded"] and m["size_bytes"] > 50_000_000 for m in models.values())


def test_concurrent_uploads_are_all_answered_correctly(base_url):
    clips = list(librivox().items()) * 2

    async def run():
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*[client.post(f"{base_url}/v1/speech/transcribe",
                                                      files={"audio": (p.name, p.read_bytes())},
                                                      data={"language": "en"}) for p, _ in clips])

    for (_, ref), r in zip(clips, asyncio.run(run())):
        assert r.status_code == 200 and wer(ref, r.json()["text"]) <= 0.2, r.text


# --- OpenAI-compatible, through the official client ---------------------------------------------

@pytest.fixture
def openai_client(base_url):
    from openai import OpenAI

    return OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", timeout=120)


def test_openai_client_transcription_formats(openai_client):
    with CLIP.open("rb") as f:
        t = openai_client.audio.transcriptions.create(model="whisper-1", file=f)
    assert wer(REF, t.text) <= 0.15
    with CLIP.open("rb") as f:
        srt = openai_client.audio.transcriptions.create(model="whisper-tiny.en", file=f, response_format="srt")
    assert srt.startswith("1\n00:00:00,") and "-->" in srt
    with CLIP.open("rb") as f:
        vtt = openai_client.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT") and "dashwood" in vtt.lower()
    with CLIP.open("rb") as f:
        text = openai_client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert wer(REF, text) <= 0.15


def test_openai_client_verbose_json_with_word_and_segment_granularity(openai_client):
    with CLIP.open("rb") as f:
        v = openai_client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                      language="en", timestamp_granularities=["word", "segment"])
    assert v.language == "english" and v.duration == pytest.approx(7.1, abs=0.05)
    assert v.words[0].word == "And" and v.words[-1].end <= 7.2
    assert v.segments and v.segments[0].avg_logprob < 0


def test_openai_json_carries_usage_and_accepts_segment_granularity(base_url):
    r = post(base_url, "/v1/audio/transcriptions", "file", CLIP.read_bytes(), model="whisper-1",
             response_format="json", **{"timestamp_granularities[]": "segment"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"text", "usage"} and wer(REF, body["text"]) <= 0.15
    assert body["usage"] == {"type": "duration", "seconds": 8}   # 7.1 s, billed in whole seconds as OpenAI does


def test_openai_models_retrieve(openai_client):
    import openai

    model = openai_client.models.retrieve("whisper-tiny.en")
    assert model.id == "whisper-tiny.en" and model.object == "model"
    assert openai_client.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError) as err:
        openai_client.models.retrieve("whisper-9000")
    assert err.value.body["type"] == "invalid_request_error" and "whisper-9000" in err.value.body["message"]


def test_openai_subtitles_and_verbose_segments_are_sentence_sized(base_url):
    """The call holds several sentences per decode chunk; srt/vtt/verbose_json cut them at sentence ends."""
    chunks = post(base_url, "/transcribe", "file", CALL.read_bytes(), language="en").json()["segments"]
    verbose = post(base_url, "/v1/audio/transcriptions", "file", CALL.read_bytes(), model="whisper-1",
                   language="en", response_format="verbose_json").json()
    segments = verbose["segments"]
    assert len(segments) > len(chunks), (segments, chunks)
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert all(s["end"] - s["start"] <= 10.5 for s in segments), segments
    assert all(a["end"] <= b["start"] + 0.3 for a, b in zip(segments, segments[1:]))
    ends = [s["text"].rstrip("\"')") for s in segments[:-1]]
    assert sum(e.endswith((".", "?", "!")) for e in ends) >= 0.7 * len(ends), ends
    assert wer(verbose["text"], " ".join(s["text"] for s in segments)) == 0 and "words" not in verbose
    srt = post(base_url, "/v1/audio/transcriptions", "file", CALL.read_bytes(), model="whisper-1",
               language="en", response_format="srt").text
    assert srt.count(" --> ") == len(segments)


def test_openai_word_granularity_needs_verbose_json(openai_client):
    import openai

    with CLIP.open("rb") as f, pytest.raises(openai.BadRequestError) as err:
        openai_client.audio.transcriptions.create(model="whisper-1", file=f, timestamp_granularities=["word"])
    assert "verbose_json" in str(err.value)


def test_openai_unknown_model_and_silence(openai_client):
    import openai

    with CLIP.open("rb") as f, pytest.raises(openai.NotFoundError):
        openai_client.audio.transcriptions.create(model="whisper-9000", file=f)
    t = openai_client.audio.transcriptions.create(model="whisper-1", file=("silence.wav", silence_wav()))
    assert t.text == ""


def test_openai_translation_and_models(openai_client):
    with CLIP.open("rb") as f:
        v = openai_client.audio.translations.create(model="whisper-base", file=f, response_format="verbose_json")
    assert v.task == "translate" and wer(REF, v.text) <= 0.2
    import openai

    with CLIP.open("rb") as f, pytest.raises(openai.BadRequestError):
        openai_client.audio.translations.create(model="whisper-tiny.en", file=f)
    ids = {m.id for m in openai_client.models.list()}
    assert {"whisper-base", "whisper-tiny.en", "whisper-1"} <= ids


def test_long_file_keeps_each_utterance_at_its_own_time(base_url):
    """Five clips with 3 s of silence between them (about 40 s): every clip's words come back, in
    order, with timestamps inside that clip's span (offsets survive the VAD split and batching)."""
    import numpy as np

    from speechcore.audio import decode_audio, wav_bytes

    gap = np.zeros(3 * 16000, dtype=np.float32)
    pieces, spans, t = [gap], [], 3.0
    for path in librivox():
        audio = decode_audio(path.read_bytes())
        pieces += [audio, gap]
        spans.append((t, t + len(audio) / 16000))
        t += len(audio) / 16000 + 3.0
    body = post(base_url, "/transcribe", "file", wav_bytes(np.concatenate(pieces)), "long.wav", language="en").json()
    assert body["duration"] == pytest.approx(t, abs=0.1)
    assert wer(" ".join(librivox().values()), body["text"]) <= 0.15, body["text"]
    for seg in body["segments"]:
        mid = (seg["start"] + seg["end"]) / 2
        assert any(s - 0.5 <= mid <= e + 0.5 for s, e in spans), (seg, spans)
    assert len(body["segments"]) >= len(spans)
