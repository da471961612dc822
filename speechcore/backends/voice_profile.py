"""Voice profile (SSAP): distributions over voice properties, each from a real model.

CPU profile: gender from the Voice2Gender XGBoost model (PyPI `voice2gender`,
20 acoustic features at 44.1 kHz). Age and emotion have no model that can be had
here; they are reported unavailable unless the config names an ONNX classifier
for them (`options.models.<property> = {path, labels, samples}`: a [1, samples]
16 kHz waveform in, one logit per label out), as the GPU profile can.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from speechcore.audio import float_to_pcm16, resample
from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo
from speechcore.spec import BackendOptions, BackendSpec

PROPERTIES = ("gender", "age", "emotion")
GENDER_RATE = 44100


class OnnxClassifier:
    """A waveform classifier exported to ONNX (e.g. a wav2vec2 age or emotion head)."""

    def __init__(self, path: str, labels: list[str], samples: int = 16000 * 6, device: str = "cpu"):
        import onnxruntime as ort

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") \
            else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(resolve(path), providers=providers)
        self.labels, self.samples = labels, samples

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        x = audio[: self.samples][None, :].astype(np.float32)
        logits = np.asarray(self.session.run(None, {self.session.get_inputs()[0].name: x})[0], np.float64)[0]
        e = np.exp(logits - logits.max())
        return {label: round(float(p), 4) for label, p in zip(self.labels, e / e.sum())}


class ClassifierSpec(BackendOptions):
    path: str
    labels: list[str]
    samples: int = 96000


class VoiceProfileOptions(BackendOptions):
    models: dict[str, ClassifierSpec] = {}
    """Property (age, emotion) -> an ONNX waveform classifier that backs it."""


class Voice2GenderProfile:
    Options = VoiceProfileOptions

    def __init__(self, spec: BackendSpec):
        import voice2gender

        self.spec = spec
        self._predict = voice2gender.predict
        self.path = str(Path(voice2gender.__file__).with_name("_model.py"))
        self.models = {"gender": self._gender}
        for prop, cfg in VoiceProfileOptions.model_validate(spec.options).models.items():
            self.models[prop] = OnnxClassifier(cfg.path, cfg.labels, cfg.samples, spec.device)

    def info(self) -> ModelInfo:
        return ModelInfo(role="voice_profile", name=self.spec.model, backend="voice2gender", device=self.spec.device,
                         path=self.path, size_bytes=size_bytes(self.path),
                         extra={"properties": sorted(self.models), "unavailable": self.unavailable()})

    def _gender(self, audio: np.ndarray) -> dict[str, float]:
        pcm = float_to_pcm16(resample(audio, 16000, GENDER_RATE))
        out = self._predict([pcm], sample_rate=GENDER_RATE)
        return {"female": round(out["female_probability"], 4), "male": round(out["male_probability"], 4)}

    def profile(self, audio: np.ndarray) -> dict[str, dict[str, float]]:
        """Only properties a loaded model backs; a property whose model rejects the clip is left out."""
        out = {}
        for prop, model in self.models.items():
            try:
                out[prop] = model(audio)
            except ValueError:  # e.g. too short or silent for the feature extractor
                continue
        return out

    def unavailable(self) -> dict[str, str]:
        return {p: "no model configured (set options.models.%s on the GPU profile)" % p
                for p in PROPERTIES if p not in self.models}
