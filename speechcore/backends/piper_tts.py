"""Piper (ONNX VITS) for English plus espeak-ng formant voices for other languages. CPU profile.

Voices: the Piper voice named by the model (e.g. `en_US-joe-medium`), the
voices of the Kokoro model named by `options.kokoro` (Japanese; see
kokoro_tts.py) and `espeak-<lang>` for each language in `options.espeak_languages`.
Synthesis yields one chunk per sentence so callers can stream.

Speed (0.25-4.0) is delivered as asked, measured as duration ratios: Piper's
`length_scale` leaves pauses unscaled and saturates (x0.58 asked 0.5, x2.06 asked
4.0), so Piper speaks at its natural pace and is time-stretched (pitch kept);
espeak-ng's rate is exact from 0.5 to 4.0 (87-700 words per minute) and
floors at 80 wpm, so below 0.5 the rest is time-stretched.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speechcore.audio import decode_audio, time_stretch
from speechcore.backends.kokoro_tts import KokoroTTS
from speechcore.backends.onnx_session import cpu_session_options
from speechcore.errors import ApiError
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo, Speech
from speechcore.spec import BackendOptions, BackendSpec

ESPEAK_RATE = 22050
ESPEAK_SPEEDS = (0.5, 4.0)   # where espeak-ng's -s delivers the speed itself
DEFAULT_ESPEAK = ["vi", "fr", "de", "es", "it", "pt", "ja", "ko", "zh", "ru", "cs", "pl", "nl"]


class PiperOptions(BackendOptions):
    espeak_languages: list[str] = DEFAULT_ESPEAK
    """Languages offered as `espeak-<lang>` voices (when espeak-ng is installed)."""
    gender: str = "male"
    """Reported gender of the Piper voice."""
    kokoro: str | None = None
    """A Kokoro model (registry name or path) whose voices this deployment offers too."""
    threads: int = 2
    """onnxruntime threads for the Piper voice (they sleep when idle: `cpu_session_options`)."""


class PiperTTS:
    Options = PiperOptions

    def __init__(self, spec: BackendSpec):
        import onnxruntime as ort
        from piper import PiperConfig, PiperVoice
        from piper.voice import ESPEAK_DATA_DIR

        self.spec = spec
        root = Path(resolve(spec.model))
        self.onnx = root if root.suffix == ".onnx" else next(root.glob("*.onnx"))
        self.config = json.loads(Path(f"{self.onnx}.json").read_text())
        self.opts = PiperOptions.model_validate(spec.options)
        session = ort.InferenceSession(str(self.onnx), cpu_session_options(self.opts.threads),
                                       providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(config=PiperConfig.from_dict(self.config), session=session,
                                espeak_data_dir=Path(ESPEAK_DATA_DIR), download_dir=Path.cwd())
        self.piper_name = self.onnx.stem
        self.espeak = shutil.which("espeak-ng")
        self.espeak_languages = self.opts.espeak_languages if self.espeak else []
        self.kokoro = KokoroTTS(BackendSpec(backend="kokoro", model=self.opts.kokoro)) if self.opts.kokoro else None
        self.kokoro_voices = {v["name"] for v in self.kokoro.voices()} if self.kokoro else set()

    def info(self) -> ModelInfo:
        return ModelInfo(role="tts", name=self.spec.model, backend="piper", device="cpu", path=str(self.onnx),
                         size_bytes=size_bytes(str(self.onnx)), languages=self.languages(),
                         extra={"voices": [v["name"] for v in self.voices()], "default_voice": self.piper_name})

    def languages(self) -> list[str]:
        return sorted({self.config["language"]["code"].split("_")[0], *self.espeak_languages,
                       *(["ja"] if self.kokoro else [])})

    def voices(self) -> list[dict[str, Any]]:
        piper = {"name": self.piper_name, "language": self.config["language"]["code"].split("_")[0],
                 "gender": self.opts.gender,
                 "sample_rate": self.config["audio"]["sample_rate"],
                 "quality": self.config.get("audio", {}).get("quality", "medium"), "engine": "piper"}
        espeak = [{"name": f"espeak-{lang}", "language": lang, "gender": "male", "sample_rate": ESPEAK_RATE,
                   "quality": "low", "engine": "espeak-ng"} for lang in self.espeak_languages]
        return [piper, *(self.kokoro.voices() if self.kokoro else []), *espeak]

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

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0,
                   language: str | None = None) -> Iterator[Speech]:
        """Each voice speaks its own language; `language` only matters to multilingual engines."""
        name = self.voice_for(voice, None)
        if name == self.piper_name:
            yield from self._piper(text, speed)
        elif self.kokoro is not None and name in self.kokoro_voices:
            yield from self.kokoro.synthesize(text, name, speed)
        else:
            native = min(max(speed, ESPEAK_SPEEDS[0]), ESPEAK_SPEEDS[1])
            yield _stretched(self._espeak(text, name.removeprefix("espeak-"), native), speed / native)

    def _piper(self, text: str, speed: float) -> Iterator[Speech]:
        for chunk in self.voice.synthesize(text):
            yield _stretched(Speech(audio=chunk.audio_float_array.astype(np.float32),
                                    sample_rate=chunk.sample_rate), speed)

    def _espeak(self, text: str, language: str, speed: float) -> Speech:
        assert self.espeak is not None   # espeak voices exist only when it is installed
        # The text goes on stdin, never on the command line: text starting with "-" must stay text.
        wav = subprocess.run([self.espeak, "-v", language, "-s", str(int(175 * speed)), "--stdout", "--stdin"],
                             input=text.encode("utf-8"), capture_output=True, check=True, timeout=60).stdout
        return Speech(audio=decode_audio(wav, sample_rate=ESPEAK_RATE), sample_rate=ESPEAK_RATE)


def _stretched(speech: Speech, factor: float) -> Speech:
    return Speech(audio=time_stretch(speech.audio, speech.sample_rate, factor), sample_rate=speech.sample_rate)
