"""Anti-spoofing detector on onnxruntime: the small in-repo model (spectral statistics -> P(real))
or a bigger waveform model such as AASIST, chosen by config.

Options: `input` "features" (default, reads speechcore.antispoof.features) or "waveform"
(a [1, samples] float32 tensor, e.g. AASIST's 64600 samples at 16 kHz, cropped or tiled);
`real_index` picks the bona fide logit of a two-class output (softmaxed); `thresholds`
overrides the per-mode thresholds of the model card (`<model>.json` beside the file).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from speechcore.antispoof.features import spoof_features
from speechcore.antispoof.quality import QualityLimits, assess, is_speech_problem
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo
from speechcore.spec import BackendOptions, BackendSpec

MODES = ("bank_top_security", "bank_flex", "consumer")


class AntiSpoofOptions(BackendOptions):
    input: Literal["features", "waveform"] | None = None
    """Model input; default: the model card's, else features."""
    samples: int = 64600
    real_index: int = 1
    thresholds: dict[str, float] = {}
    quality: dict[str, float] = {}
    """Overrides of `QualityLimits` (speechcore.antispoof.quality)."""
    threads: int = 1


class OnnxAntiSpoof:
    Options = AntiSpoofOptions

    def __init__(self, spec: BackendSpec):
        import onnxruntime as ort

        self.spec = spec
        self.path = resolve(spec.model)
        card_path = Path(self.path).with_suffix(".json")
        self.card = json.loads(card_path.read_text()) if card_path.exists() else {}
        opts = AntiSpoofOptions.model_validate(spec.options)
        self.input_kind = opts.input or self.card.get("input", "features")
        self.samples = opts.samples
        self.real_index = opts.real_index
        self.thresholds = {**self.card.get("thresholds", {}), **opts.thresholds}
        missing = [m for m in MODES if m not in self.thresholds]
        if missing:
            raise ValueError(f"anti-spoof model {self.path} has no thresholds for modes {missing}")
        self.limits = QualityLimits(**opts.quality)
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if spec.device.startswith("cuda") \
            else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(self.path, so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def info(self) -> ModelInfo:
        return ModelInfo(role="anti_spoof", name=self.spec.model, backend="onnx-antispoof",
                         device=self.spec.device, path=self.path, size_bytes=size_bytes(self.path),
                         extra={"input": self.input_kind, "thresholds": self.thresholds,
                                "held_out": self.card.get("held_out", {})})

    def _model_input(self, audio: np.ndarray) -> np.ndarray:
        if self.input_kind == "features":
            return spoof_features(audio)[None, :]
        reps = int(np.ceil(self.samples / max(1, len(audio))))
        return np.tile(audio, reps)[: self.samples][None, :].astype(np.float32)

    def score(self, audio: np.ndarray) -> float:
        """P(real): the model's bona fide probability for the clip."""
        out = np.asarray(self.session.run(None, {self.input_name: self._model_input(audio)})[0], np.float64)
        if out.ndim == 2 and out.shape[1] == 2:
            e = np.exp(out[0] - out[0].max())
            return float(e[self.real_index] / e.sum())
        return float(out.reshape(-1)[0])

    def detect(self, audio: np.ndarray, mode: str = "bank_flex") -> dict[str, Any]:
        """Verdict under `mode`; confidence is the distance from the threshold, scaled to [0, 1]
        by the room on that side of it."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        p_real, threshold = self.score(audio), float(self.thresholds[mode])
        is_real = p_real >= threshold
        room = (1.0 - threshold) if is_real else threshold
        confidence = min(1.0, abs(p_real - threshold) / room) if room > 0 else 1.0
        quality = assess(audio, self.limits)
        result = "real" if is_real else "fake"
        if any(is_speech_problem(p) for p in quality.problems):   # a tone or noise is neither
            result, is_real = "not_speech", False
        return {"result": result, "is_real": is_real, "score": round(p_real, 4),
                "threshold": threshold, "confidence": round(confidence, 4), "qa_passed": quality.passed,
                "qa": quality.as_dict()}
