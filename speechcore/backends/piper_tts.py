"""Piper (ONNX VITS) for English plus espeak-ng formant voices for other languages. CPU profile.

Voices: the Piper voice named by the model (e.g. `en_US-joe-medium`) and
`espeak-<lang>` for each language in `options.espeak_languages`.
Synthesis yields one chunk per sentence so callers can stream.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speechcore.audio import decode_audio
from speechcore.errors import ApiError
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo, Speech
from speechcore.spec import BackendOptions, BackendSpec

ESPEAK_RATE = 22050
DEFAULT_ESPEAK = ["vi", "fr", "de", "es", "it", "pt", "ja", "ko", "zh", "ru", "cs", "pl", "nl"]


class PiperOptions(BackendOptions):
    espeak_languages: list[str] = DEFAULT_ESPEAK
    """Languages offered as `espeak-<lang>` voices (when espeak-ng is installed)."""
    gender: str = "male"
    """Reported gender of the Piper voice."""


class PiperTTS:
    Options = PiperOptions

    def __init__(self, spec: BackendSpec):
        from piper import PiperVoice

        self.spec = spec
        root = Path(resolve(spec.model))
        self.onnx = root if root.suffix == ".onnx" else next(root.glob("*.onnx"))
        self.config = json.loads(Path(f"{self.onnx}.json").read_text())
        self.voice = PiperVoice.load(self.onnx, f"{self.onnx}.json")
        self.piper_name = self.onnx.stem
        self.opts = PiperOptions.model_validate(spec.options)
        self.espeak = shutil.which("espeak-ng")
        self.espeak_languages = self.opts.espeak_languages if self.espeak else []

    def info(self) -> ModelInfo:
        return ModelInfo(role="tts", name=self.spec.model, backend="piper", device="cpu", path=str(self.onnx),
                         size_bytes=size_bytes(str(self.onnx)), languages=self.languages(),
                         extra={"voices": [v["name"] for v in self.voices()], "default_voice": self.piper_name})

    def languages(self) -> list[str]:
        return sorted({self.config["language"]["code"].split("_")[0], *self.espeak_languages})

    def voices(self) -> list[dict[str, Any]]:
        piper = {"name": self.piper_name, "language": self.config["language"]["code"].split("_")[0],
                 "gender": self.opts.gender,
                 "sample_rate": self.config["audio"]["sample_rate"],
                 "quality": self.config.get("audio", {}).get("quality", "medium"), "engine": "piper"}
        espeak = [{"name": f"espeak-{lang}", "language": lang, "gender": "male", "sample_rate": ESPEAK_RATE,
                   "quality": "low", "engine": "espeak-ng"} for lang in self.espeak_languages]
        return [piper, *espeak]

    def voice_for(self, voice: str | None, language: str | None) -> str:
        """A voice name from an explicit voice or a language; ApiError 404 if neither exists."""
        names = {v["name"]: v for v in self.voices()}
        if voice:
            if voice not in names:
                raise ApiError(404, "voice_not_found", f"Voice {voice!r} not found; available: {sorted(names)}")
            return voice
        if not language or language == names[self.piper_name]["language"]:
            return self.piper_name
        if f"espeak-{language}" in names:
            return f"espeak-{language}"
        raise ApiError(404, "voice_not_found", f"No voice for language {language!r}; languages: {self.languages()}")

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[Speech]:
        name = self.voice_for(voice, None)
        if name == self.piper_name:
            yield from self._piper(text, speed)
        else:
            yield self._espeak(text, name.removeprefix("espeak-"), speed)

    def _piper(self, text: str, speed: float) -> Iterator[Speech]:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=1.0 / speed)
        for chunk in self.voice.synthesize(text, syn_config=cfg):
            yield Speech(audio=chunk.audio_float_array.astype(np.float32), sample_rate=chunk.sample_rate)

    def _espeak(self, text: str, language: str, speed: float) -> Speech:
        assert self.espeak is not None   # espeak voices exist only when it is installed
        # The text goes on stdin, never on the command line: text starting with "-" must stay text.
        wav = subprocess.run([self.espeak, "-v", language, "-s", str(int(175 * speed)), "--stdout", "--stdin"],
                             input=text.encode("utf-8"), capture_output=True, check=True, timeout=60).stdout
        return Speech(audio=decode_audio(wav, sample_rate=ESPEAK_RATE), sample_rate=ESPEAK_RATE)
