"""Speaker request graph: clips -> speaker_embedding deployment -> voiceprint store -> decisions.

Shared by the reachy speaker API and the platform's voice print API, and
callable from a job worker: it takes named float32 clips (`Clip`), never an
HTTP type, and returns typed decisions that the routers only format. The
identify and verify policies (best cosine against a calibrated threshold;
AS-norm once the cohort allows) live here. The store (speechcore.speakers.store)
is SQLite under the data dir or the server's PostgreSQL; its calls run in a
worker thread so a replica waiting on another replica's write lock never
blocks the event loop.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache

from typing import Any

import numpy as np

from graphs.services import Services
from speechcore.audio import SAMPLE_RATE, rms
from speechcore.errors import ApiError, AudioError
from speechcore.settings import get_settings
from speechcore.speakers.scoring import Score, Thresholds, cosine, score, voiceprint
from speechcore.speakers.store import Speaker, VoiceprintStore

MIN_SECONDS = 0.5
SILENCE_RMS = 1e-4


@dataclass
class Clip:
    """Decoded audio (float32 16 kHz mono) and the name errors and results call it by."""
    name: str
    audio: np.ndarray


@dataclass
class Decision:
    """An identify or verify answer on the cosine scale: `speaker` is None when nobody matched."""
    accepted: bool
    speaker: str | None
    confidence: float
    threshold: float


def check_clip(clip: Clip) -> np.ndarray:
    """The clip's audio, or a 4xx naming the clip when it is too short or silent to embed."""
    if len(clip.audio) < MIN_SECONDS * SAMPLE_RATE:
        raise AudioError("audio_too_short", f"{clip.name}: {len(clip.audio) / SAMPLE_RATE:.2f} s of audio; "
                                            f"at least {MIN_SECONDS} s is needed (3 s or more recommended).")
    if rms(clip.audio) < SILENCE_RMS:
        raise AudioError("silent_audio", f"{clip.name}: the audio is silent.")
    return clip.audio


@lru_cache
def store() -> VoiceprintStore:
    return VoiceprintStore.from_settings(get_settings())


@dataclass
class Voiceprints:
    svc: Services
    db: VoiceprintStore

    @property
    def model(self) -> str:
        return self.svc.spec.role("speaker_embedding").model

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.from_options(self.svc.spec.role("speaker_embedding").options)

    async def embed(self, clip: Clip) -> np.ndarray:
        return await self.svc.speaker_embedding.embed(check_clip(clip))

    async def embed_all(self, clips: list[Clip]) -> list[np.ndarray]:
        for clip in clips:   # every clip is checked before any is embedded
            check_clip(clip)
        return list(await asyncio.gather(*(self.embed(c) for c in clips)))

    async def enroll(self, family: str, name: str, clip: Clip, description: str = "",
                     speaker_id: str | None = None) -> tuple[Speaker, str | None, np.ndarray]:
        """Adds a sample to the named speaker (created on first enrolment): (speaker, audio path, embedding)."""
        embedding = await self.embed(clip)
        speaker, path = await asyncio.to_thread(self.db.add_sample, family=family, model=self.model,
                                                embedding=embedding, audio=clip.audio, name=name,
                                                description=description, speaker_id=speaker_id)
        return speaker, path, embedding

    async def delete_named(self, name: str) -> None:
        """Deletes a reachy speaker with its samples and audio; 404 for an unknown name."""
        sid = await asyncio.to_thread(self.db.id_by_name, name)
        if sid is None or not await asyncio.to_thread(self.db.delete, sid, "reachy"):
            raise ApiError(404, "speaker_not_found", f"Speaker '{name}' not found")

    async def delete_registered(self, speaker_id: str) -> None:
        """Deletes a voice print registered through /voice/register; 404 for an unknown id."""
        if not await asyncio.to_thread(self.db.delete, speaker_id, "voice"):
            raise ApiError(404, "speaker_not_found", f"Speaker '{speaker_id}' not found")

    async def registered(self) -> list[dict[str, Any]]:
        """Every voice print registered through /voice/register, with its sample count."""
        return await asyncio.to_thread(self.db.summaries, "voice")

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

    async def require_enrolled(self) -> None:
        """400 when no reachy speaker is enrolled (callers check before reading an upload)."""
        if not await asyncio.to_thread(self.db.count, "reachy"):
            raise ApiError(400, "no_speakers", "No speakers enrolled. Please enroll speakers first.")

    async def identify(self, clip: Clip) -> Decision:
        """Best cosine over every reachy speaker's print; identified when it reaches the threshold."""
        await self.require_enrolled()
        embedding = await self.embed(clip)
        candidates = await asyncio.to_thread(self.db.speakers, "reachy", self.model)
        scored = [(cosine(voiceprint(s.embeddings), embedding), s.name) for s in candidates if s.embeddings]
        best, who = max(scored, default=(0.0, None))
        threshold = self.thresholds.cosine
        accepted = who is not None and best >= threshold
        return Decision(accepted, who if accepted else None, round(best, 4), threshold)

    async def verify_cosine(self, speaker: Speaker, clip: Clip) -> Decision:
        """Cosine of the clip against the speaker's print, against the model's cosine threshold."""
        similarity = cosine(voiceprint(speaker.embeddings), await self.embed(clip))
        threshold = self.thresholds.cosine
        return Decision(similarity >= threshold, speaker.name, round(similarity, 4), threshold)

    async def verify(self, speaker: Speaker, clips: list[Clip]) -> list[Score]:
        """Each clip against a registered print (AS-norm when the cohort allows; the speaker is not an impostor)."""
        return await self._scores(voiceprint(speaker.embeddings), await self.embed_all(clips), speaker.id)

    async def keep_tested(self, speaker: Speaker, clips: list[Clip]) -> list[str | None]:
        """Stores the verified clips with the speaker's audio (bounded by `verify_keep_clips`): their paths."""
        return await asyncio.to_thread(self.db.keep_test_clips, speaker.id, [c.audio for c in clips],
                                       get_settings().verify_keep_clips)

    async def verify_with_reference(self, reference: Clip, clips: list[Clip]) -> list[Score]:
        """Each clip against an uploaded reference clip."""
        enrol, *tests = await self.embed_all([reference, *clips])
        return await self._scores(enrol, tests, None)

    async def _scores(self, enrol: np.ndarray, tests: list[np.ndarray], exclude: str | None) -> list[Score]:
        cohort = await asyncio.to_thread(self.db.impostors, self.model, exclude)
        return [score(enrol, t, cohort, self.thresholds) for t in tests]


async def anti_spoof(svc: Services, clips: list[Clip], mode: str) -> list[dict]:
    """One verdict per clip (real or synthetic/replayed), all clips checked first, scored concurrently."""
    audios = [check_clip(c) for c in clips]
    return list(await asyncio.gather(*(svc.anti_spoof.detect(a, mode) for a in audios)))


async def voice_profile(svc: Services, clip: Clip) -> tuple[dict, dict]:
    """(property -> label distribution, property -> why it is unavailable)."""
    audio = check_clip(clip)
    properties, unavailable = await asyncio.gather(svc.voice_profile.profile(audio),
                                                   svc.voice_profile.unavailable())
    return properties, unavailable
