"""Speaker request graph: decode -> speaker_embedding deployment -> voiceprint store -> scores.

Shared by the reachy speaker API and the platform's voice print API. The store
is plain SQLite under the data dir (speechcore.speakers.store); its calls run
in a worker thread so a replica waiting on another replica's write lock never
blocks the event loop.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from fastapi import Depends, UploadFile

from graphs.routers import services
from graphs.services import Services
from speechcore.audio import SAMPLE_RATE, decode_audio, rms
from speechcore.errors import ApiError, AudioError
from speechcore.settings import get_settings
from speechcore.speakers.scoring import Score, Thresholds, cosine, score, voiceprint
from speechcore.speakers.store import Speaker, VoiceprintStore

MIN_SECONDS = 0.5
SILENCE_RMS = 1e-4


@lru_cache
def store() -> VoiceprintStore:
    return VoiceprintStore(get_settings().data_dir)


async def decode_upload(upload: UploadFile, param: str = "file") -> np.ndarray:
    """Upload -> float32 16 kHz mono, with a 4xx for empty, non-audio, too short, too long
    (`max_voice_seconds`: a voice print needs seconds, not hours) or silent input."""
    name = upload.filename or param
    try:
        audio = await asyncio.to_thread(decode_audio, upload.file, SAMPLE_RATE, get_settings().max_voice_seconds)
    except AudioError as err:
        raise AudioError(err.code, f"{name}: {err.message}", err.status) from err
    if len(audio) < MIN_SECONDS * SAMPLE_RATE:
        raise AudioError("audio_too_short", f"{name}: {len(audio) / SAMPLE_RATE:.2f} s of audio; "
                                            f"at least {MIN_SECONDS} s is needed (3 s or more recommended).")
    if rms(audio) < SILENCE_RMS:
        raise AudioError("silent_audio", f"{name}: the audio is silent.")
    return audio


@dataclass
class Voiceprints:
    svc: Services
    db: VoiceprintStore

    @property
    def model(self) -> str:
        return self.svc.spec.speaker_embedding.model

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.from_options(self.svc.spec.speaker_embedding.options)

    async def embed(self, audio: np.ndarray) -> np.ndarray:
        return await self.svc.speaker_embedding.embed(audio)

    async def embed_all(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return list(await asyncio.gather(*(self.embed(c) for c in clips)))

    async def enroll(self, family: str, name: str, audio: np.ndarray, description: str = "",
                     speaker_id: str | None = None) -> tuple[Speaker, str, np.ndarray]:
        embedding = await self.embed(audio)
        speaker, path = await asyncio.to_thread(self.db.add_sample, family=family, model=self.model,
                                                embedding=embedding, audio=audio, name=name,
                                                description=description, speaker_id=speaker_id)
        return speaker, path, embedding

    async def speaker(self, speaker_id: str, label: str | None = None) -> Speaker:
        """The speaker with comparable samples, or 404 / 409."""
        found = await asyncio.to_thread(self.db.get, speaker_id, self.model)
        if found is None:
            raise ApiError(404, "speaker_not_found", f"Speaker '{label or speaker_id}' not found")
        if not found.embeddings:
            raise ApiError(409, "no_comparable_samples",
                           f"Speaker '{label or speaker_id}' has no samples from the current embedding model "
                           f"({self.model}); enroll it again.")
        return found

    async def speaker_by_name(self, name: str) -> Speaker:
        sid = await asyncio.to_thread(self.db.id_by_name, name)
        if sid is None:
            raise ApiError(404, "speaker_not_found", f"Speaker '{name}' not found")
        return await self.speaker(sid, name)

    async def identify(self, embedding: np.ndarray) -> tuple[Speaker | None, float]:
        """Best cosine over every reachy speaker's print."""
        candidates = await asyncio.to_thread(self.db.speakers, "reachy", self.model)
        scored = [(cosine(voiceprint(s.embeddings), embedding), s) for s in candidates if s.embeddings]
        if not scored:
            return None, 0.0
        best, who = max(scored, key=lambda t: t[0])
        return who, best

    async def verify(self, enrol: np.ndarray, tests: list[np.ndarray], exclude: str | None) -> list[Score]:
        """Scores of each test embedding against `enrol` (AS-norm when the cohort allows)."""
        cohort = await asyncio.to_thread(self.db.impostors, self.model, exclude)
        return [score(enrol, t, cohort, self.thresholds) for t in tests]


def voiceprints(svc: Services = Depends(services)) -> Voiceprints:
    """FastAPI dependency."""
    return Voiceprints(svc, store())
