"""Audio in and out of a peer connection: the agent's outgoing track and the microphone reader.

`AgentTrack` is what the browser hears: aiortc pulls a 20 ms frame from
`recv()` whenever its Opus encoder wants one, and `recv()` paces itself on
the wall clock (aiortc's own sources do the same), so the agent's speech
leaves in real time and silence fills the gaps between turns. The
conversation engine already sends at most `playback_lead_ms` ahead of
playback, so the queue here stays short; `clear()` (barge-in) drops what is
queued and the next frame is silence.

`mic_audio(track)` turns the remote track's decoded frames (Opus at 48 kHz,
usually stereo s16) into 16 kHz mono float32 chunks for the engine, with a
stateful resampler (no clicks at frame edges).
"""
from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from typing import Any, AsyncIterator

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from speechcore.audio import SAMPLE_RATE, StreamResampler

RATE = 48000                   # Opus's clock: no resampling between the engine and the encoder
FRAME_SAMPLES = RATE // 50     # 20 ms, aiortc's Opus frame
TIME_BASE = fractions.Fraction(1, RATE)


class AgentTrack(MediaStreamTrack):
    """Outgoing audio: queued agent speech, paced in real time, silence when there is none."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[np.ndarray] = deque()     # int16 frames of FRAME_SAMPLES
        self._pending = np.zeros(0, dtype=np.int16)  # the tail shorter than a frame
        self._start: float | None = None
        self._sent = 0                               # samples handed to the encoder
        self.speech_frames = 0                       # frames of agent speech sent (stats, tests)

    def push(self, audio: np.ndarray) -> None:
        """Queue float32 mono audio at 48 kHz."""
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        pcm = np.concatenate([self._pending, pcm])
        whole = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
        self._queue.extend(pcm[:whole].reshape(-1, FRAME_SAMPLES))
        self._pending = pcm[whole:]

    def flush(self) -> None:
        """The reply is over: its last partial frame is sent too (padded with silence)."""
        if len(self._pending):
            self._queue.append(np.pad(self._pending, (0, FRAME_SAMPLES - len(self._pending))))
            self._pending = np.zeros(0, dtype=np.int16)

    def clear(self) -> None:
        """Barge-in: nothing queued is played."""
        self._queue.clear()
        self._pending = np.zeros(0, dtype=np.int16)

    @property
    def queued_s(self) -> float:
        return (len(self._queue) * FRAME_SAMPLES + len(self._pending)) / RATE

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            wait = self._start + self._sent / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.5:                        # the loop stalled: restart the clock, don't burst
                self._start, self._sent = now, 0
        if self._queue:
            samples = self._queue.popleft()
            self.speech_frames += 1
        else:
            samples = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._sent, TIME_BASE
        self._sent += FRAME_SAMPLES
        return frame


def frame_to_mono(frame: Any) -> np.ndarray:
    """A decoded audio frame as float32 mono at its own rate (packed or planar, any channel count)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = data.astype(np.float32).mean(axis=0)
    else:
        mono = data.reshape(-1, channels).astype(np.float32).mean(axis=1)
    if np.issubdtype(data.dtype, np.integer):
        mono /= float(np.iinfo(data.dtype).max) + 1.0
    return mono


async def mic_audio(track: MediaStreamTrack) -> AsyncIterator[np.ndarray]:
    """16 kHz mono float32 chunks of a remote audio track, until it ends."""
    resamplers: dict[int, StreamResampler] = {}
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        rate = frame.sample_rate
        resampler = resamplers.setdefault(rate, StreamResampler(rate, SAMPLE_RATE))
        chunk = resampler(frame_to_mono(frame))
        if len(chunk):
            yield chunk
