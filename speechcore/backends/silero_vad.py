"""Silero VAD v6 ONNX on onnxruntime (from the `silero-vad` package).

Stateless towards callers: a stream's framing, context and recurrent state
travel in an opaque `SileroStream` that the caller passes back with the next
audio (`stream_probs`), so one replica serves every session, any replica can
take the next call, and frames from many streams run as one batch. Nothing
outside this module knows Silero's frame, context or state sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from speechcore.registry import resolve, size_bytes
from speechcore.schemas import ModelInfo
from speechcore.spec import BackendOptions, BackendSpec
from speechcore.vad import FRAME_SAMPLES, FRAME_SECONDS

CONTEXT = 64                 # samples of the previous frame the model sees before each frame
STATE = 128                 # recurrent state per stream: (2, 1, STATE)
_LANE_SECONDS = 30          # long files run as parallel lanes of this length


@dataclass
class SileroStream:
    """One stream's state between calls (opaque to callers)."""
    rnn: np.ndarray = field(default_factory=lambda: np.zeros((2, 1, STATE), np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    leftover: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))   # less than a frame


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

    def stream_probs(self, audio: np.ndarray, state: SileroStream | None) -> tuple[np.ndarray, float, SileroStream]:
        """Probabilities of the whole frames `audio` completes, the frame length (s), the state to pass next."""
        return self.stream_probs_batch([(audio, state)])[0]

    def stream_probs_batch(self, items: list[tuple[np.ndarray, SileroStream | None]]
                           ) -> list[tuple[np.ndarray, float, SileroStream]]:
        """`stream_probs` for many streams at once: one ONNX run per frame step across them."""
        states = [s or SileroStream() for _, s in items]
        joined = [np.concatenate([s.leftover, a.astype(np.float32, copy=False)]) for (a, _), s in zip(items, states)]
        counts = [x.size // FRAME_SAMPLES for x in joined]
        lanes = [x[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES) for x, n in zip(joined, counts)]
        rnn = np.concatenate([s.rnn for s in states], axis=1)
        context = np.stack([s.context for s in states])
        probs, rnn, context = self._step(lanes, rnn, context)
        return [(probs[i, :n], FRAME_SECONDS,
                 SileroStream(rnn[:, i:i + 1].copy(), context[i].copy(), x[n * FRAME_SAMPLES:].copy()))
                for i, (x, n) in enumerate(zip(joined, counts))]

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
        rows = list(x.reshape(len(x), lane_frames, FRAME_SAMPLES))
        fresh = np.zeros((2, len(rows), STATE), np.float32), np.zeros((len(rows), CONTEXT), np.float32)
        probs = self._step(rows, *fresh)[0]
        out, row = [], 0
        for n, lanes in zip(counts, lanes_of):
            out.append(probs[row: row + lanes].reshape(-1)[:n].astype(np.float32))
            row += lanes
        return out

    def _step(self, lanes: list[np.ndarray], rnn: np.ndarray, context: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run lanes of (T_i, 512) frames side by side from their states; each lane's state and
        context are taken after its own last frame. -> (probs (L, max T), rnn, context)."""
        steps = max((len(f) for f in lanes), default=0)
        probs = np.zeros((len(lanes), steps), dtype=np.float32)
        rnn_out, context_out = rnn.copy(), context.copy()
        ends: dict[int, list[int]] = {}
        for i, f in enumerate(lanes):
            ends.setdefault(len(f) - 1, []).append(i)
        for t in range(steps):
            frames = np.stack([f[t] if t < len(f) else np.zeros(FRAME_SAMPLES, np.float32) for f in lanes])
            probs[:, t], rnn = self.run(np.concatenate([context, frames], axis=1), rnn)
            context = frames[:, -CONTEXT:]
            for i in ends.get(t, []):
                rnn_out[:, i], context_out[i] = rnn[:, i], context[i]
        return probs, rnn_out, context_out
