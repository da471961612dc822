"""NVIDIA NeMo ASR (e.g. Parakeet TDT/CTC, Canary) for the GPU profile.

Loads a `.nemo` file from a configured path, or a pretrained name through
NeMo's own downloader on clusters that reach the hub. Imported lazily.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.registry import load_registry, resolve, size_bytes
from speechcore.schemas import ASRRequest, ModelInfo, Segment, Transcript, Word
from speechcore.spec import BackendOptions, BackendSpec


class NemoOptions(BackendOptions):
    batch_size: int = 16


class NemoASR:
    Options = NemoOptions

    def __init__(self, spec: BackendSpec):
        import nemo.collections.asr as nemo_asr

        self.spec = spec
        self.path = resolve(spec.model)
        if Path(self.path).suffix == ".nemo":
            self.model = nemo_asr.models.ASRModel.restore_from(self.path, map_location=spec.device)
        else:
            self.model = nemo_asr.models.ASRModel.from_pretrained(self.path, map_location=spec.device)
        self.model.eval()
        self.batch_size = NemoOptions.model_validate(spec.options).batch_size
        entry = load_registry().get(spec.model)
        self.languages = entry.languages if entry and isinstance(entry.languages, list) else ["en"]

    def info(self) -> ModelInfo:
        return ModelInfo(role="asr", name=self.spec.model, backend="nemo", device=self.spec.device,
                         path=self.path, size_bytes=size_bytes(self.path), languages=self.languages)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        return self.languages[0], 1.0

    def transcribe_batch(self, requests: list[ASRRequest],
                         stopped: Callable[[], bool] | None = None) -> list[Transcript]:
        """One `transcribe` call over every clip (NeMo offers no segment boundary to stop at)."""
        clips, owners = [], []
        for ri, r in enumerate(requests):
            for start, end in r.clips:
                clips.append(r.audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)])
                owners.append((ri, start))
        hyps = self.model.transcribe(clips, batch_size=self.batch_size, timestamps=True) if clips else []
        segments: list[list[Segment]] = [[] for _ in requests]
        for (ri, start), hyp, clip in zip(owners, hyps, clips):
            segments[ri].append(_segment(len(segments[ri]), hyp, start, len(clip) / SAMPLE_RATE))
        return [Transcript(text=" ".join(s.text for s in segs).strip(), language=self.languages[0],
                           language_probability=1.0, duration=len(r.audio) / SAMPLE_RATE,
                           segments=segs, model=self.spec.model) for r, segs in zip(requests, segments)]


def _segment(idx: int, hyp: Any, offset: float, length: float) -> Segment:
    text = hyp.text if hasattr(hyp, "text") else str(hyp)
    stamps = (getattr(hyp, "timestamp", None) or {}).get("word", [])
    words = [Word(word=w["word"], start=round(offset + w["start"], 3), end=round(offset + w["end"], 3),
                  probability=1.0) for w in stamps] or None
    return Segment(id=idx, start=round(offset, 3), end=round(offset + length, 3), text=text.strip(), words=words)
