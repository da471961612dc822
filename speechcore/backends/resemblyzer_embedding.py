"""Resemblyzer GE2E speaker encoder (weights from the `resemblyzer` package), CPU profile.

Same recipe as Resemblyzer's `embed_utterance`: volume normalised to -30 dBFS,
1.6 s partial windows at 1.3/s, embeddings averaged and L2-normalised.
"""
from __future__ import annotations

import numpy as np

from speechcore.mel import mel_power
from speechcore.registry import model_file, size_bytes
from speechcore.schemas import ModelInfo
from speechcore.spec import BackendSpec, EmbedderOptions

PARTIAL_FRAMES = 160
HOP = 160


class ResemblyzerOptions(EmbedderOptions):
    threads: int = 1


class ResemblyzerEmbedding:
    Options = ResemblyzerOptions
    dim = 256

    def __init__(self, spec: BackendSpec):
        import torch
        from torch import nn

        torch.set_num_threads(ResemblyzerOptions.model_validate(spec.options).threads)
        self.spec = spec
        self.path = model_file(spec.model, "pretrained.pt")
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        state = torch.load(self.path, map_location="cpu")["model_state"]
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.eval()
        self._torch = torch

    def info(self) -> ModelInfo:
        return ModelInfo(role="speaker_embedding", name=self.spec.model, backend="resemblyzer",
                         device="cpu", path=self.path, size_bytes=size_bytes(self.path),
                         extra={"dim": self.dim})

    def embed_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """One L2-normalised 256-d embedding per clip; all partials of all clips in one LSTM pass."""
        partials, owners = [], []
        for i, clip in enumerate(clips):
            for p in _partials(_normalize_volume(clip)):
                partials.append(p)
                owners.append(i)
        torch = self._torch
        with torch.inference_mode():
            _, (hidden, _) = self.lstm(torch.from_numpy(np.stack(partials)))
            raw = torch.relu(self.linear(hidden[-1]))
            embeds = (raw / torch.norm(raw, dim=1, keepdim=True)).numpy()
        owners_arr = np.array(owners)
        out = []
        for i in range(len(clips)):
            mean = embeds[owners_arr == i].mean(axis=0)
            out.append((mean / np.linalg.norm(mean)).astype(np.float32))
        return out


def _normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    rms_db = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2) + 1e-12)
    change = target_dbfs - rms_db
    return wav if change < 0 else (wav * 10 ** (change / 20)).astype(np.float32)


def _partials(wav: np.ndarray, rate: float = 1.3, min_coverage: float = 0.75) -> list[np.ndarray]:
    n_frames = int(np.ceil((len(wav) + 1) / HOP))
    step = int(np.round((16000 / rate) / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    last = starts[-1] * HOP
    if (len(wav) - last) / (PARTIAL_FRAMES * HOP) < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    need = (starts[-1] + PARTIAL_FRAMES) * HOP
    if need > len(wav):
        wav = np.pad(wav, (0, need - len(wav)))
    mel = mel_power(wav)
    return [mel[s: s + PARTIAL_FRAMES] for s in starts]
