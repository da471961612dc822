"""Real speech re-encoded into the containers clients upload, plus deliberately broken files."""
from __future__ import annotations

import io

import numpy as np

from speechcore.audio import decode_audio, encode_audio, wav_bytes


def encode_container(wav: bytes, container: str) -> bytes:
    """wav bytes -> m4a (AAC in MP4) or webm (Opus) with PyAV; other formats via encode_audio."""
    audio = decode_audio(wav)
    if container in ("mp3", "ogg", "flac", "aac"):
        return encode_audio(audio, 16000, container)[0]
    import av

    fmt, codec, rate = {"m4a": ("mp4", "aac", 16000), "webm": ("webm", "libopus", 48000)}[container]
    from speechcore.audio import resample

    samples = (np.clip(resample(audio, 16000, rate), -1, 1) * 32767).astype(np.int16).reshape(1, -1)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for p in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(p)
    return buf.getvalue()


def silence_wav(seconds: float = 2.0) -> bytes:
    return wav_bytes(np.zeros(int(seconds * 16000), dtype=np.float32))


def header_only_wav() -> bytes:
    return wav_bytes(np.zeros(0, dtype=np.float32))
