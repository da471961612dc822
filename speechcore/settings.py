"""The one settings object. Every knob is an environment variable prefixed SPEECH_."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def unprefixed(name: str) -> AliasChoices:
    """Also read the variable without the SPEECH_ prefix, as the reference system that defines it names it
    (the prefixed name wins when both are set)."""
    return AliasChoices(f"SPEECH_{name.upper()}", name.upper(), name)


class IceServer(BaseModel):
    """One STUN or TURN server for WebRTC peers (RTCIceServer's fields)."""
    urls: list[str] | str
    username: str | None = None
    credential: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPEECH_", extra="ignore")

    models_dir: Path = REPO_ROOT / "models"
    """Where `make models` puts model files; backends resolve relative model paths here."""
    data_dir: Path = REPO_ROOT / "data"
    """Persistent state: voiceprints database, reference audio, jobs."""
    fixtures_dir: Path = REPO_ROOT / "fixtures"
    """Real recorded speech gathered by the install step for tests and benchmarks."""
    max_upload_bytes: int = 50 * 1024 * 1024
    """Uploads above this size are refused with 413 while they stream in."""
    max_audio_seconds: float = 3 * 3600
    """Decoded audio longer than this is refused (413, checked while decoding) on transcription endpoints."""
    max_voice_seconds: float = 120.0
    """The same limit for speaker, voice print, anti-spoofing and voice profile uploads."""
    verify_keep_clips: int = Field(20, ge=0, le=1000)
    """`/voice/verify/{id}` keeps each tested clip with the speaker's audio (`speakers/<id>/tests/`) and
    returns its `path`; only the newest this many per speaker stay. 0 keeps none (`path` is null)."""
    body_timeout_s: float = 60.0
    """A request body must arrive whole within this many seconds, else 408 (stalled or trickling uploads)."""
    api_key: str | None = Field(default=None, validation_alias=unprefixed("api_key"))
    """When set, every non-public path needs `Authorization: Bearer <key>` or `X-API-Key`. `API_KEY` is
    accepted too (the job API's reference reads that name); `SPEECH_API_KEY` wins when both are set."""
    cors_origins: Annotated[list[str], NoDecode] = []
    """Origins browsers may call from (comma-separated, or `*`); none by default."""
    request_timeout_s: float = 300.0
    """Upper bound on one model call made by the ingress, plus `timeout_per_audio_s` for each second
    of audio the call carries; a call that runs out is cancelled (its queued work never runs) and
    answers 503 `timeout`."""
    timeout_per_audio_s: float = 1.0
    """Extra timeout per second of audio: a file under `max_audio_seconds` must not time out, so this
    is at least the slowest model's seconds per audio second (CPU profile, whisper-base: about 0.1)."""
    status_refresh_s: float = 2.0
    """How often the ingress refreshes deployment readiness."""
    stream_idle_timeout_s: float = 30.0
    """A live-transcription socket that sends nothing for this long is flushed and closed (4408)."""
    stream_max_frame_bytes: int = 1024 * 1024
    """Largest WebSocket message a live-transcription session accepts (larger: close 1009)."""
    stream_partial_backlog: int = 2
    """Live sessions skip a partial while this many of their ASR requests are already in flight."""
    max_live_sessions: int = 16
    """Open live WebSocket sessions per ingress replica; one more is refused (error event, close 1013)."""
    tts_max_text_chars: int = 5000
    """Longest text `/v1/speech/synthesize` accepts (400 beyond; OpenAI's `/v1/audio/speech` keeps 4096)."""
    tts_piece_chars: int = 150
    """Text is synthesized in pieces of at most this many characters (sentences, else clauses, else words),
    so one model run's memory is bounded whatever the punctuation."""
    log_level: str = "WARNING"

    # Chat completions (the LLM)
    llm_max_tokens: int = 512
    """Answer length when a chat request names neither `max_tokens` nor `max_completion_tokens`."""

    # --- diarization and the job service (/api/*, /transcribe-with-property) ---
    database_url: str | None = None
    """The job store and the voiceprint library: `sqlite:///path` or `postgresql+psycopg://user@host/db`
    (one database for both, so a cluster shares them); default two SQLite files in data_dir."""
    storage_dir: Path | None = None
    """Uploaded audio, speaker embeddings, the cohort and voiceprint audio (`speakers/`); a cluster shares
    it. Default: jobs under data_dir/jobs, voiceprint audio under data_dir/speakers."""
    job_max_upload_bytes: int = Field(2 * 1024**3, validation_alias=AliasChoices(
        "SPEECH_JOB_MAX_UPLOAD_BYTES", "MAX_UPLOAD_BYTES", "job_max_upload_bytes"))
    """Upload limit of POST /api/transcribe only (the global limit does not apply there)."""
    job_body_timeout_s: float = 3600.0
    """The body deadline of POST /api/transcribe (large recordings take a while to upload)."""
    ffmpeg_timeout_sec: float = Field(1800.0, validation_alias=unprefixed("ffmpeg_timeout_sec"))
    """Decoding an upload longer than this fails the job (504 on /transcribe-with-property)."""
    job_workers: int = 1
    """Jobs one ingress replica runs at once (the rest wait queued)."""
    job_task_cpus: float = Field(1.0, ge=0.0, le=64.0)
    """CPUs Ray reserves for a job's decode or denoise task (they run in Ray's workers, not the ingress)."""
    denoise_model: str = Field("none", validation_alias=unprefixed("denoise_model"))
    denoise_snr_threshold: float = Field(10.0, validation_alias=unprefixed("denoise_snr_threshold"))
    voiceprint_threshold: float | None = Field(None, validation_alias=unprefixed("voiceprint_threshold"))
    """Raw-cosine match threshold of job voiceprints; unset: the embedding model's calibrated
    `cosine_threshold` (Resemblyzer 0.75 as the reference, ERes2Net 0.35)."""
    diarization_pipeline: str | None = None
    """GPU profile: a local pyannote.audio pipeline (directory or config.yaml) used instead of the
    window-embedding clustering; needs pyannote.audio installed (imported only when set)."""

    # -- scale and operations (issue 16) --
    dashboard: bool = False
    """`make run` / `python -m graphs.launch` start Ray's dashboard only when this is on (about 350 MiB)."""
    metrics_port: int | None = None
    """Port of the node's Prometheus metrics (`ray_speech_*`, `ray_serve_*`) for `graphs.launch`; Ray picks a
    free one when unset (`ray.nodes()[0]["MetricsExportPort"]`)."""

    # Voice chat (/ws/voice-chat)
    voice_chat_language: str = "vi"
    """Language of a voice chat whose config names none (the platform document's default); "auto": detected."""
    voice_chat_idle_timeout_s: float = 60.0
    """A voice chat with no message for this long (and no answer in progress) gets `disconnect` and closes (4408);
    a client may shorten it with `?idle_timeout_s=`."""
    voice_chat_max_sessions: int = 8
    """Open voice chats per ingress replica (each also counts against `max_live_sessions`)."""
    voice_chat_max_text_chars: int = 2000
    """Longest `text_input`."""
    voice_chat_followup_after_s: float = 0.0
    """Default silence before a proactive follow-up (0: off; a config's `followup_after_s` overrides)."""

    # Voice layer (/v1/voice/ws): the optional external chat backend
    backend_base_url: str | None = Field(None, validation_alias=unprefixed("backend_base_url"))
    """Root of an external chat backend (`<root>/v1/register`, `<root>/v1/chat`); None: custom backends are
    refused and every session talks to the server's own LLM."""
    backend_api_key: str | None = Field(None, validation_alias=unprefixed("backend_api_key"))
    """Sent to the external backend as `Authorization: Bearer <key>`."""
    default_registration_id: str | None = Field(None, validation_alias=unprefixed("default_registration_id"))
    """Registration used when a session names no backend (with `backend_base_url` set)."""
    allow_frontend_backend_auth: bool = Field(False, validation_alias=unprefixed("allow_frontend_backend_auth"))
    """True: a session's `backend.api_key`/`base_url`/`registration_id` may override the deployed ones."""
    voice_layer_system_prompt: str | None = None
    """System prompt of voice-layer sessions on the server's own LLM (None: the conversation default)."""
    # WebRTC voice agent (graphs/rtc, POST /offer and /ice)
    webrtc_max_peers: int = 4
    """Peer connections one ingress replica holds; one more `/offer` is refused (503 `too_many_peers`)."""
    webrtc_ice_servers: list[IceServer] = []
    """STUN/TURN servers for the server's peers, JSON: `[{"urls": ["stun:host:3478"]}, {"urls":
    ["turn:host:3478", "turns:host:3478"], "username": "...", "credential": "..."}]`. None: host candidates
    only (enough on a LAN or with a public address)."""
    webrtc_host_addresses: Annotated[list[str], NoDecode] = []
    """Addresses host candidates are gathered on (comma-separated); empty: every interface but loopback."""
    webrtc_connect_timeout_s: float = 30.0
    """A peer whose ICE and DTLS have not connected this long after its offer is closed."""
    webrtc_media_timeout_s: float = 30.0
    """A connected peer whose microphone track delivers nothing for this long is closed."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return [o.strip().rstrip("/") for o in value.split(",") if o.strip()] if isinstance(value, str) else value

    @field_validator("webrtc_host_addresses", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        return [a.strip() for a in value.split(",") if a.strip()] if isinstance(value, str) else value


@lru_cache
def get_settings() -> Settings:
    return Settings()
