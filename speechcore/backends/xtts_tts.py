"""Coqui XTTS v2 (multilingual, voice cloning) for the GPU profile. Imported lazily.

`model` is a local XTTS checkpoint directory (config.json + model.pth) or a
Coqui model name. Voices are reference WAVs in `options.voices_dir`
(`<name>.wav`), cloned per request; output is 24 kHz.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speechcore.errors import ApiError
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo, Speech
from speechcore.spec import BackendOptions, BackendSpec

LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh", "ja", "hu", "ko", "hi"]


class XttsOptions(BackendOptions):
    voices_dir: str = "data/voices"
    """Reference voices, `<name>.wav` each."""


class XttsTTS:
    Options = XttsOptions
    sample_rate = 24000

    def __init__(self, spec: BackendSpec):
        from TTS.api import TTS

        self.spec = spec
        self.path = resolve(spec.model)
        root = Path(self.path)
        if root.is_dir():
            self.tts = TTS(model_path=str(root), config_path=str(root / "config.json")).to(spec.device)
        else:
            self.tts = TTS(self.path).to(spec.device)
        self.voices_dir = Path(XttsOptions.model_validate(spec.options).voices_dir)

    def info(self) -> ModelInfo:
        return ModelInfo(role="tts", name=self.spec.model, backend="coqui-xtts", device=self.spec.device,
                         path=self.path, size_bytes=size_bytes(self.path), languages=LANGUAGES,
                         extra={"voices": [v["name"] for v in self.voices()]})

    def voices(self) -> list[dict[str, Any]]:
        """One voice per reference WAV; each speaks every XTTS language (`languages`), listed under
        the language its file name starts with (`fr_marie.wav` -> fr), else English."""
        return [{"name": p.stem, "language": _language_of(p.stem), "languages": LANGUAGES, "gender": "unknown",
                 "sample_rate": self.sample_rate, "quality": "high", "engine": "xtts", "reference_audio": p.name}
                for p in sorted(self.voices_dir.glob("*.wav"))]

    def voice_for(self, voice: str | None, language: str | None) -> str:
        names = [v["name"] for v in self.voices()]
        if voice and voice not in names:
            raise ApiError(404, "voice_not_found", f"Voice {voice!r} not found; available: {names}")
        if not names:
            raise ApiError(503, "engine_unavailable", f"No reference voices in {self.voices_dir}")
        return voice or names[0]

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0,
                   language: str | None = None) -> Iterator[Speech]:
        """`language` (the request's) is passed to XTTS; a language XTTS lacks is a 400."""
        language = language or "en"
        if language not in LANGUAGES:
            raise ApiError(400, "language_not_supported", f"XTTS does not speak {language!r}; languages: "
                                                          f"{LANGUAGES}", param="language")
        ref = self.voices_dir / f"{self.voice_for(voice, language)}.wav"
        wav = self.tts.tts(text=text, speaker_wav=str(ref), language=language, speed=speed)
        yield Speech(audio=np.asarray(wav, dtype=np.float32), sample_rate=self.sample_rate)


def _language_of(name: str) -> str:
    prefix = name.split("_")[0].split("-")[0].lower()
    return prefix if prefix in LANGUAGES else "en"
