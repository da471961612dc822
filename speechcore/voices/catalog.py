"""Every voice the TTS deployment speaks with, under a stable UUID, and how a request picks one.

A voice's id is a UUID5 of its engine and name, so it survives restarts and
replicas and needs no table: `/api/speakers`, collections and `speaker_id` in
`/ws/tts` all use it. `pick` is the one routing rule (speaker id, else the
collection's speaker for the language, else the best voice for the language,
else the default voice), shared by every TTS and voice-chat endpoint.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from speechcore.errors import ApiError

NAMESPACE = uuid.UUID("6b1f4f7e-3c5e-5d8a-9a51-2f6d2f0e7a11")
COLLECTION_LANGUAGES = ("vi", "en", "fr", "ja", "ko", "zh", "ru")
"""The language codes the platform's collections API names."""
ENGINE_RANK = {"xtts": 0, "kokoro": 1, "piper": 1, "espeak-ng": 9}
"""Which engine speaks a language best when several can (lower is better)."""


def voice_id(engine: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{engine}:{name}"))


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    language: str
    engine: str
    gender: str = "unknown"
    sample_rate: int = 0
    quality: str = "medium"
    reference_audio: str = ""
    languages: tuple[str, ...] = ()
    """Every language the voice can speak (XTTS reference voices speak all of XTTS's)."""

    @classmethod
    def from_dict(cls, v: Mapping[str, Any]) -> Voice:
        language = str(v["language"])
        return cls(id=voice_id(str(v["engine"]), str(v["name"])), name=str(v["name"]), language=language,
                   engine=str(v["engine"]), gender=str(v.get("gender", "unknown")),
                   sample_rate=int(v.get("sample_rate", 0)), quality=str(v.get("quality", "medium")),
                   reference_audio=str(v.get("reference_audio", "")),
                   languages=tuple(v.get("languages") or [language]))

    def speaks(self, language: str) -> bool:
        return language in self.languages

    def speaker(self, user_id: str = "default") -> dict[str, str]:
        """The platform's `/api/speakers` entry."""
        return {"id": self.id, "name": self.name, "reference_audio": self.reference_audio or f"{self.name}.wav",
                "language": self.language, "user_id": user_id}


class Catalog:
    """The voices of one TTS deployment, looked up by id, name or language."""

    def __init__(self, voices: Iterable[Voice]):
        self.voices = list(voices)
        self.by_id = {v.id: v for v in self.voices}
        self.by_name = {v.name: v for v in self.voices}

    @classmethod
    def from_dicts(cls, voices: Iterable[Mapping[str, Any]]) -> Catalog:
        return cls(Voice.from_dict(v) for v in voices)

    @property
    def default(self) -> Voice:
        if not self.voices:
            raise ApiError(503, "no_voices", "The TTS deployment offers no voices.")
        return self.voices[0]

    def get(self, speaker_id: str, param: str = "speaker_id") -> Voice:
        voice = self.by_id.get(speaker_id)
        if voice is None:
            raise ApiError(404, "speaker_not_found", f"Unknown speaker {speaker_id!r}; GET /api/speakers "
                                                     "lists the voices.", param=param)
        return voice

    def named(self, name: str, param: str = "voice") -> Voice:
        """A voice by name (or by its speaker UUID); ApiError 404 otherwise."""
        voice = self.by_name.get(name) or self.by_id.get(name.lower())
        if voice is None:
            raise ApiError(404, "voice_not_found", f"Voice {name!r} not found; available: {sorted(self.by_name)}",
                           param=param)
        return voice

    def for_language(self, language: str) -> Voice:
        """The best voice whose own language is `language` (else one that speaks it); 404 if none."""
        own = [v for v in self.voices if v.language == language] or [v for v in self.voices if v.speaks(language)]
        if not own:
            raise ApiError(404, "language_not_supported", f"No voice speaks {language!r}; languages: "
                                                          f"{self.languages()}", param="language")
        return min(own, key=lambda v: ENGINE_RANK.get(v.engine, 5))

    def languages(self) -> list[str]:
        return sorted({lang for v in self.voices for lang in v.languages})

    def pick(self, speaker_id: str | None = None, collection: Mapping[str, str] | None = None,
             language: str | None = None, voice: str | None = None) -> Voice:
        """The voice for a request: `voice` name or `speaker_id`, else the collection's speaker for
        `language`, else the best voice for `language`, else the default voice."""
        if voice:
            return self.named(voice)
        if speaker_id:
            return self.get(speaker_id)
        if collection and language and language in collection:
            return self.get(collection[language], param="collection_id")
        return self.for_language(language) if language else self.default
