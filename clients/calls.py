"""The server's HTTP API as typed calls: one `Call` (request + parser) per endpoint, shared by the sync and
async clients (`clients.speech`), so each endpoint is described once. No server code is imported."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar
from urllib.parse import quote

import httpx

T = TypeVar("T")
Audio = bytes | str | Path
"""Audio to upload: the file's bytes or its path."""


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class Transcription:
    text: str
    language: str              # as the endpoint names it (OpenAI: "english")
    duration: float
    segments: list[Segment]
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class Voice:
    name: str
    language: str
    gender: str | None
    sample_rate: int
    quality: str = ""


@dataclass(frozen=True)
class SpeakerDecision:
    """`/identify` and `/verify`: accepted when `confidence` reaches `threshold`."""
    accepted: bool
    speaker: str | None
    confidence: float
    threshold: float


@dataclass(frozen=True)
class SpoofResult:
    file: str
    result: str              # real, fake or not_speech
    is_real: bool
    score: float


class SpeechError(Exception):
    """An error answer, read from whichever family shape the endpoint uses."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after_s = status, code, message, retry_after_s


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = field(default_factory=dict)
    checked: bool = True
    """False: the parser reads error statuses itself (readiness)."""


def check(r: httpx.Response) -> httpx.Response:
    """The response, or SpeechError with the server's code and message (OpenAI, gateway or detail shape)."""
    if 200 <= r.status_code < 300:    # (not `is_success`: Locust hands in a `requests` response)
        return r
    try:
        body = r.json()
    except ValueError:
        body = {}
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code, message = str(err.get("code") or err.get("type") or r.status_code), str(err.get("message", ""))
    else:
        detail = body.get("detail", r.text) if isinstance(body, dict) else r.text
        code, message = "error", detail if isinstance(detail, str) else str(detail)
    retry = r.headers.get("Retry-After")
    raise SpeechError(r.status_code, code, message, float(retry) if retry and retry.isdigit() else None)


def _file(audio: Audio) -> tuple[str, bytes]:
    if isinstance(audio, (str, Path)):
        return Path(audio).name, Path(audio).read_bytes()
    return "audio.wav", audio


def _transcription(r: httpx.Response) -> Transcription:
    """OpenAI's verbose_json: `words` is one top-level list; each segment gets the words inside it too."""
    b = r.json()
    words = [Word(w["word"].strip(), float(w["start"]), float(w["end"]), w.get("probability")) for w in b.get("words", [])]
    return Transcription(b["text"], b.get("language", ""), float(b.get("duration", 0.0)), [
        Segment(int(s["id"]), float(s["start"]), float(s["end"]), s["text"].strip(),
                [w for w in words if s["start"] <= (w.start + w.end) / 2 <= s["end"]])
        for s in b.get("segments", [])], words)


def transcribe(audio: Audio, model: str = "whisper-1", language: str | None = None, words: bool = False,
               translate: bool = False, prompt: str | None = None) -> Call[Transcription]:
    """OpenAI-compatible transcription (verbose_json: sentence segments; `words`: word timings too)."""
    data: dict[str, Any] = {"model": model, "response_format": "verbose_json",
                            "timestamp_granularities[]": ["segment", "word"] if words else ["segment"]}
    data.update({k: v for k, v in {"language": language, "prompt": prompt}.items() if v})
    path = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
    return Call("POST", path, _transcription, {"files": {"file": _file(audio)}, "data": data})


def models() -> Call[list[str]]:
    return Call("GET", "/v1/models", lambda r: [m["id"] for m in r.json()["data"]])


def speech(text: str, voice: str | None = None, speed: float = 1.0, fmt: str = "wav") -> Call[bytes]:
    """Text to speech (gateway family): the whole audio body; `SpeechClient.stream_speech` streams it."""
    body = {"text": text, "speed": speed, "format": fmt, **({"voice": voice} if voice else {})}
    return Call("POST", "/v1/speech/synthesize", lambda r: r.content, {"json": body})


def voices(language: str | None = None) -> Call[list[Voice]]:
    params = {"language": language} if language else {}
    return Call("GET", "/v1/speech/voices", lambda r: [
        Voice(v["name"], v.get("language", ""), v.get("gender"), int(v.get("sample_rate", 0)), v.get("quality", ""))
        for v in r.json()["voices"]], {"params": params})


def gateway_transcribe(audio: Audio, language: str | None = None, model: str | None = None,
                       words: bool = False) -> Call[dict[str, Any]]:
    """The speech gateway's transcription (`/v1/speech/transcribe`): its JSON body as the gateway document
    gives it (segments with `words[word, start_ms, end_ms, confidence]`)."""
    data = {"word_timestamps": str(words).lower(),
            **{k: v for k, v in {"language": language, "model": model}.items() if v}}
    return Call("POST", "/v1/speech/transcribe", lambda r: dict(r.json()),
                {"files": {"audio": _file(audio)}, "data": data})


def speech_models() -> Call[list[dict[str, Any]]]:
    """The gateway's ASR models (`/v1/speech/models`): name, loaded, size_bytes, languages, description."""
    return Call("GET", "/v1/speech/models", lambda r: list(r.json()["models"]))


def speakers() -> Call[list[str]]:
    return Call("GET", "/speakers", lambda r: list(r.json()["speakers"]))


def enroll(name: str, audio: Audio) -> Call[int]:
    """Adds a sample to `name`'s voiceprint; returns the embedding size."""
    return Call("POST", f"/speakers/{quote(name, safe='')}/enroll",
                lambda r: int(r.json()["embedding_size"]), {"files": {"file": _file(audio)}})


def delete_speaker(name: str) -> Call[None]:
    return Call("DELETE", f"/speakers/{quote(name, safe='')}", lambda r: None)


def _decision(key: str) -> Callable[[httpx.Response], SpeakerDecision]:
    def parse(r: httpx.Response) -> SpeakerDecision:
        b = r.json()
        return SpeakerDecision(bool(b[key]), b.get("speaker"), float(b["confidence"]), float(b["threshold"]))
    return parse


def identify(audio: Audio) -> Call[SpeakerDecision]:
    return Call("POST", "/identify", _decision("identified"), {"files": {"file": _file(audio)}})


def verify(name: str, audio: Audio) -> Call[SpeakerDecision]:
    return Call("POST", "/verify", _decision("verified"), {"params": {"name": name}, "files": {"file": _file(audio)}})


def anti_spoof(files: list[Audio], mode: str = "bank_flex") -> Call[list[SpoofResult]]:
    return Call("POST", "/voice/anti-spoof", lambda r: [
        SpoofResult(x["file"], x["result"], bool(x["is_real"]), float(x["score"])) for x in r.json()["results"]],
        {"files": [("files", _file(f)) for f in files], "data": {"mode": mode}})


def voice_profile(audio: Audio) -> Call[dict[str, Any]]:
    return Call("POST", "/voice/profile", lambda r: dict(r.json()["properties"]), {"files": {"file": _file(audio)}})


def chat(messages: list[dict[str, str]], model: str, max_tokens: int | None = None,
         temperature: float | None = None, stream: bool = False) -> Call[str]:
    """OpenAI-compatible chat completion: the assistant's text (`stream`: read the SSE lines with chat_delta)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    body.update({k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None})
    return Call("POST", "/v1/chat/completions", lambda r: str(r.json()["choices"][0]["message"]["content"]),
                {"json": body})


def chat_delta(line: str) -> str | None:
    """The text of one line of a streamed chat completion (None: no text on it); an error event raises."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    event = json.loads(line[6:])
    if "error" in event:
        err = event["error"]
        raise SpeechError(200, str(err.get("code") or err.get("type")), str(err.get("message", "")))
    choices = event.get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or None


def ready() -> Call[bool]:
    return Call("GET", "/readyz", lambda r: r.status_code == 200, checked=False)


# --- jobs (VoScript-style /api/*: diarized transcription with voiceprints) ---------------------

@dataclass(frozen=True)
class JobSegment:
    id: int
    start: float
    end: float
    text: str
    speaker_label: str       # the diarization's SPEAKER_00...
    speaker_name: str        # the matched voiceprint's name, else the label
    speaker_id: str | None   # spk_<uuid> of the matched voiceprint
    similarity: float
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class JobResult:
    id: str
    filename: str
    language: str
    segments: list[JobSegment]
    unique_speakers: list[str]
    speaker_map: dict[str, Any]
    params: dict[str, Any]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


@dataclass(frozen=True)
class Job:
    id: str
    status: str              # queued, converting, denoising, transcribing, identifying, completed, failed
    filename: str = ""
    progress: float = 0.0    # 0..1
    error: str | None = None
    result: JobResult | None = None
    deduplicated: bool = False

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed")


def _job_result(b: dict[str, Any]) -> JobResult:
    return JobResult(b["id"], b.get("filename", ""), b.get("language", ""), [
        JobSegment(int(s["id"]), float(s["start"]), float(s["end"]), s["text"].strip(), s["speaker_label"],
                   s["speaker_name"], s.get("speaker_id"), float(s.get("similarity", 0.0)),
                   [Word(w["word"], float(w["start"]), float(w["end"]), w.get("score")) for w in s.get("words", [])])
        for s in b["segments"]], list(b.get("unique_speakers", [])), dict(b.get("speaker_map", {})),
        dict(b.get("params", {})))


def _job(b: dict[str, Any]) -> Job:
    return Job(b["id"], b["status"], b.get("filename", ""), float(b.get("progress", 0.0)), b.get("error"),
               _job_result(b["result"]) if "result" in b else None, bool(b.get("deduplicated", False)))


def submit_job(audio: Audio, language: str | None = None, min_speakers: int = 0, max_speakers: int = 0,
               denoise_model: str | None = None, snr_threshold: float | None = None,
               no_repeat_ngram_size: int | None = None) -> Call[Job]:
    """Queues a diarized transcription (speaker counts 0: found automatically); the same bytes again
    answer the existing job (`deduplicated`)."""
    fields = {"language": language, "min_speakers": min_speakers, "max_speakers": max_speakers,
              "denoise_model": denoise_model, "snr_threshold": snr_threshold,
              "no_repeat_ngram_size": no_repeat_ngram_size}
    return Call("POST", "/api/transcribe", lambda r: _job(r.json()),
                {"files": {"file": _file(audio)}, "data": {k: str(v) for k, v in fields.items() if v is not None}})


def job(job_id: str) -> Call[Job]:
    return Call("GET", f"/api/jobs/{quote(job_id, safe='')}", lambda r: _job(r.json()))


def jobs() -> Call[list[Job]]:
    """Recent jobs with their status (no results)."""
    return Call("GET", "/api/jobs", lambda r: [_job(b) for b in r.json()])


def job_result(job_id: str) -> Call[JobResult]:
    return Call("GET", f"/api/transcriptions/{quote(job_id, safe='')}", lambda r: _job_result(r.json()))


def export_job(job_id: str, fmt: str = "srt") -> Call[str]:
    """The result as srt, vtt, txt or json text."""
    return Call("GET", f"/api/export/{quote(job_id, safe='')}", lambda r: r.text, {"params": {"format": fmt}})


def failed(j: Job) -> Job:
    """`j`, or SpeechError when the job failed (what waiting for a result raises)."""
    if j.status == "failed":
        raise SpeechError(500, "job_failed", j.error or "failed")
    return j
