"""Silero VAD v6 ONNX on onnxruntime (from the `silero-vad` package).

Stateless towards callers: streaming sessions keep their own recurrent state
and context and pass them in, so one replica serves every session and frames
from many sessions run as one batch.
"""
from __future__ import annotations

import numpy as np

from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo
from speechcore.spec import BackendOptions, BackendSpec
from speechcore.vad import FRAME_SAMPLES

CONTEXT = 64
STATE_SHAPE = (2, 1, 128)
_LANE_SECONDS = 30  # long files run as parallel lanes of this length


class SileroOptions(BackendOptions):
    threads: int = 1


class SileroVAD:
    Options = SileroOptions

    def __init__(self, spec: BackendSpec):
        import onnxruntime as ort

        self.spec = spec
        path = resolve(spec.model)
        self.path = path if path.endswith(".onnx") else f"{path}/silero_vad.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = SileroOptions.model_validate(spec.options).threads
        opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if spec.device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(self.path, sess_options=opts,
                                            providers=[p for p in providers if p in ort.get_available_providers()])
        self._sr = np.array(16000, dtype=np.int64)

    def info(self) -> ModelInfo:
        return ModelInfo(role="vad", name=self.spec.model, backend="silero-onnx", device=self.spec.device,
                         path=self.path, size_bytes=size_bytes(self.path), languages="multilingual")

    def run(self, frames: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (B, 64+512) with context prepended, state (2, B, 128) -> (probs (B,), new state)."""
        out, new_state = self.session.run(None, {"input": frames.astype(np.float32, copy=False),
                                                 "state": state.astype(np.float32, copy=False), "sr": self._sr})
        return out[:, 0], new_state

    def frame_probs(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability for every 32 ms frame of a whole recording."""
        return self.frame_probs_batch([audio])[0]

    def frame_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Frame probabilities for several recordings in one pass.

        Each recording is cut into 30 s lanes; all lanes of all recordings run
        side by side, one ONNX call per frame step (the recurrent state restarts
        at lane boundaries, which the model recovers from within a few frames).
        """
        lane_frames = _LANE_SECONDS * 16000 // FRAME_SAMPLES
        counts = [-(-a.size // FRAME_SAMPLES) for a in audios]
        lanes_of = [-(-n // lane_frames) for n in counts]
        x = np.zeros((sum(lanes_of), lane_frames * FRAME_SAMPLES), dtype=np.float32)
        row = 0
        for audio, lanes in zip(audios, lanes_of):
            flat = np.zeros(lanes * lane_frames * FRAME_SAMPLES, dtype=np.float32)
            flat[: audio.size] = audio
            x[row: row + lanes] = flat.reshape(lanes, -1)
            row += lanes
        probs = self._run_lanes(x.reshape(len(x), lane_frames, FRAME_SAMPLES)) if len(x) else np.zeros((0, 0))
        out, row = [], 0
        for n, lanes in zip(counts, lanes_of):
            out.append(probs[row: row + lanes].reshape(-1)[:n].astype(np.float32))
            row += lanes
        return out

    def _run_lanes(self, x: np.ndarray) -> np.ndarray:
        lanes, steps, _ = x.shape
        state = np.zeros((2, lanes, 128), dtype=np.float32)
        context = np.zeros((lanes, CONTEXT), dtype=np.float32)
        probs = np.empty((lanes, steps), dtype=np.float32)
        for t in range(steps):
            probs[:, t], state = self.run(np.concatenate([context, x[:, t]], axis=1), state)
            context = x[:, t, -CONTEXT:]
        return probs
