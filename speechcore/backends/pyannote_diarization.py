"""pyannote.audio's speaker-diarization pipeline from a local path (GPU profile).

Imported only when `SPEECH_DIARIZATION_PIPELINE` is set: pyannote.audio needs
torchaudio, which the CPU install does not have. Its turns and overlapped
regions come out in the same shape as the window-embedding pipeline's
(labels renumbered SPEAKER_00... by first appearance).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.pipelines.diarization import DiarizationParams, Span, Turn, label, mark_overlaps


class PyannoteDiarization:
    def __init__(self, path: str, device: str = "cuda"):
        import torch
        from pyannote.audio import Pipeline

        self.pipeline = Pipeline.from_pretrained(path)
        if device == "cuda" and torch.cuda.is_available():
            self.pipeline.to(torch.device("cuda"))
        self._torch = torch

    def __call__(self, audio: np.ndarray, params: DiarizationParams) -> tuple[list[Turn], list[Span]]:
        bounds: dict[str, Any] = {}
        if params.min_speakers:
            bounds["min_speakers"] = params.min_speakers
        if params.max_speakers:
            bounds["max_speakers"] = params.max_speakers
        waveform = self._torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        output = self.pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **bounds)
        annotation = getattr(output, "speaker_diarization", output)   # pyannote 4 wraps it
        names: dict[str, str] = {}
        turns = [Turn(names.setdefault(who, label(len(names))), round(seg.start, 3), round(seg.end, 3))
                 for seg, _, who in annotation.itertracks(yield_label=True)]
        overlaps = [(round(s.start, 3), round(s.end, 3)) for s in annotation.get_overlap()]
        return mark_overlaps(turns, overlaps), overlaps
