"""SpeechBrain ECAPA-TDNN speaker embeddings (192-d) for the GPU profile. Imported lazily.

`model` is a local directory holding a SpeechBrain `hyperparams.yaml` +
`embedding_model.ckpt` (as in speechbrain/spkrec-ecapa-voxceleb) or a hub id.
"""
from __future__ import annotations

import numpy as np

from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo
from speechcore.spec import BackendSpec, EmbedderOptions


class EcapaOptions(EmbedderOptions):
    savedir: str | None = None


class EcapaEmbedding:
    Options = EcapaOptions
    dim = 192

    def __init__(self, spec: BackendSpec):
        import torch
        from speechbrain.inference.speaker import EncoderClassifier

        self.spec = spec
        self.path = resolve(spec.model)
        self.torch = torch
        self.model = EncoderClassifier.from_hparams(source=self.path, run_opts={"device": spec.device},
                                                    savedir=EcapaOptions.model_validate(spec.options).savedir)

    def info(self) -> ModelInfo:
        return ModelInfo(role="speaker_embedding", name=self.spec.model, backend="speechbrain-ecapa",
                         device=self.spec.device, path=self.path, size_bytes=size_bytes(self.path),
                         extra={"dim": self.dim})

    def embed_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        longest = max(len(c) for c in clips)
        wavs = torch.zeros(len(clips), longest)
        for i, c in enumerate(clips):
            wavs[i, : len(c)] = torch.from_numpy(c)
        lens = torch.tensor([len(c) / longest for c in clips])
        with torch.inference_mode():
            emb = self.model.encode_batch(wavs, lens).squeeze(1).cpu().numpy()
        return [(e / np.linalg.norm(e)).astype(np.float32) for e in emb]
