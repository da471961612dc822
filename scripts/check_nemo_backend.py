"""Exercise the GPU profile's NeMo ASR backend on CPU with a tiny randomly initialised model.

NeMo installs on the CPU torch (SpeechBrain, Coqui and vLLM do not), so this
saves a small Conv-CTC model in NeMo's own `.nemo` format, loads it through
speechcore.backends.nemo_asr.NemoASR exactly as the GPU profile would load a
real checkpoint, and runs a batched transcription of real speech. The weights
are random, so the text is noise: what is checked is the loading path, the
batch shape and the mapping of results back to requests.
Run by tests/test_gpu_backends.py inside .venv-nemo (`make nemo-venv`).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LABELS = [" ", *"abcdefghijklmnopqrstuvwxyz", "'"]


def tiny_ctc_model(path: Path) -> None:
    from nemo.collections.asr.models import EncDecCTCModel
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "sample_rate": 16000, "labels": LABELS,
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "sample_rate": 16000, "features": 64, "window_size": 0.02, "window_stride": 0.01},
        "encoder": {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": 64, "activation": "relu",
                    "conv_mask": True,
                    "jasper": [{"filters": 32, "repeat": 1, "kernel": [11], "stride": [2], "dilation": [1],
                                "dropout": 0.0, "residual": False, "separable": True}]},
        "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": 32,
                    "num_classes": len(LABELS), "vocabulary": LABELS},
    })
    EncDecCTCModel(cfg=cfg).save_to(str(path))


def read_wav(path: Path):
    """16 kHz mono PCM WAV -> float32 (stdlib only: this venv has no PyAV)."""
    import wave

    import numpy as np

    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


def main() -> None:
    from speechcore.backends.nemo_asr import NemoASR
    from speechcore.schemas import ASRRequest, TranscribeOptions
    from speechcore.spec import BackendSpec

    fixtures = Path(sys.argv[1])
    clips = sorted((fixtures / "librivox").glob("*.wav"))[:2]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny-ctc.nemo"
        tiny_ctc_model(path)
        asr = NemoASR(BackendSpec(backend="nemo", model=str(path), device="cpu", options={"batch_size": 4}))
        audios = [read_wav(c) for c in clips]
        reqs = [ASRRequest(a, [(0.0, 2.0), (2.0, len(a) / 16000)], TranscribeOptions()) for a in audios]
        out = asr.transcribe_batch(reqs)
        info = asr.info()
    print(json.dumps({"backend": info.backend, "size_bytes": info.size_bytes, "n": len(out),
                      "segments": [[(s.start, s.end) for s in t.segments] for t in out],
                      "durations": [t.duration for t in out],
                      "texts_are_str": all(isinstance(t.text, str) for t in out)}))


if __name__ == "__main__":
    main()
