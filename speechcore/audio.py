"""The one place audio is decoded, resampled and converted.

Everything model-facing is float32 mono at 16 kHz in [-1, 1].
"""
from __future__ import annotations

import io
from math import gcd
from typing import Any, BinaryIO

import numpy as np

from speechcore.errors import AudioError

SAMPLE_RATE = 16000
SUPPORTED = "wav, mp3, flac, ogg, opus, m4a, webm"
RATE_RANGE = (4000, 384000)   # input sample rates outside this are refused (a 1 Hz header turns 2 KB into 1000 s)


def decode_audio(source: bytes | BinaryIO | str, sample_rate: int = SAMPLE_RATE,
                 max_seconds: float | None = None, container_format: str | None = None) -> np.ndarray:
    """Decode any container PyAV reads to float32 mono at `sample_rate`.

    Raises AudioError (4xx) for empty input, bytes that are not audio, and
    audio with no samples; a truncated file yields the part that decodes.
    `container_format` forces a demuxer for headerless files (e.g. "g722").
    """
    import av  # PyAV ships its own FFmpeg; imported here to keep module import cheap

    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError("empty_audio", "The uploaded audio is empty (0 bytes).", status=400)
        source = io.BytesIO(source)
    elif not isinstance(source, str):
        source.seek(0, io.SEEK_END)
        if source.tell() == 0:
            raise AudioError("empty_audio", "The uploaded audio is empty (0 bytes).", status=400)
        source.seek(0)
    try:
        container = av.open(source, mode="r", format=container_format, metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise AudioError("invalid_audio_format",
                         f"The upload could not be decoded as audio ({SUPPORTED} are supported).",
                         status=400) from exc
    with container:
        if not container.streams.audio:
            raise AudioError("invalid_audio_format", "The upload has no audio stream.", status=400)
        _check_rate(container.streams.audio[0].rate)
        audio = _decode_stream(container, sample_rate, max_seconds)
    if audio.size == 0:
        raise AudioError("no_audio", "The upload contains no audio samples (zero length or truncated).")
    return require_finite(audio)


def require_finite(audio: np.ndarray) -> np.ndarray:
    """Refuse NaN/Inf samples: one of them poisons every batch and voiceprint it reaches."""
    if not np.isfinite(audio).all():
        raise AudioError("non_finite_samples", "The audio contains NaN or infinite sample values.", status=400)
    return audio


def _check_rate(rate: int | None) -> None:
    if not RATE_RANGE[0] <= (rate or 0) <= RATE_RANGE[1]:
        raise AudioError("unsupported_sample_rate", f"The audio's sample rate ({rate or 0} Hz) is outside "
                                                    f"{RATE_RANGE[0]}-{RATE_RANGE[1]} Hz.", status=400)


def _decode_stream(container: Any, sample_rate: int, max_seconds: float | None) -> np.ndarray:
    """Decode frame by frame into one buffer, refusing (413) as soon as `max_seconds` is passed,
    so memory stays at the decoded size (no list of chunks plus a concatenated copy)."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    limit = int(max_seconds * sample_rate) if max_seconds else None
    expected = (container.duration or 0) / av.time_base * sample_rate
    out = _Samples(int(min(expected, limit or expected)) + sample_rate)
    stream = container.streams.audio[0]
    try:
        for frame in container.decode(stream):
            frame.pts = None
            for chunk in resampler.resample(frame):
                out.add(chunk.to_ndarray().reshape(-1))
            if limit and out.size > limit:
                raise AudioError("audio_too_long",
                                 f"Audio is longer than the limit of {max_seconds:g} seconds.",
                                 status=413)
        for chunk in resampler.resample(None):
            out.add(chunk.to_ndarray().reshape(-1))
    except av.error.FFmpegError:
        # Truncated or partly corrupt input: keep what decoded before the damage.
        pass
    return out.samples()


class _Samples:
    """A float32 buffer that grows by half when full (sized up front from the container's duration)."""

    def __init__(self, capacity: int):
        self.buf = np.empty(max(capacity, 1024), dtype=np.float32)
        self.size = 0

    def add(self, chunk: np.ndarray) -> None:
        end = self.size + chunk.size
        if end > self.buf.size:
            grown = np.empty(max(end, self.buf.size * 3 // 2), dtype=np.float32)
            grown[:self.size] = self.buf[:self.size]
            self.buf = grown
        self.buf[self.size:end] = chunk
        self.size = end

    def samples(self) -> np.ndarray:
        return self.buf[:self.size] if self.size * 2 > self.buf.size else self.buf[:self.size].copy()


def resample(audio: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of float32 audio (streams arrive at 8/16/44.1/48 kHz)."""
    if from_rate == to_rate or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(from_rate, to_rate)
    return resample_poly(audio, to_rate // g, from_rate // g).astype(np.float32)


def time_stretch(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """`factor` times faster at the same pitch (FFmpeg's atempo), for speeds a TTS engine cannot reach."""
    if abs(factor - 1.0) < 0.01 or audio.size == 0:
        return audio
    import av

    graph = av.filter.Graph()
    source = node = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono")
    for step in _tempo_steps(factor):
        tempo = graph.add("atempo", f"{step:.6f}")
        node.link_to(tempo)
        node = tempo
    sink = graph.add("abuffersink")
    node.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(audio.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate, frame.pts = sample_rate, 0
    source.push(frame)
    source.push(None)
    out = []
    while True:
        try:
            out.append(sink.pull().to_ndarray().reshape(-1))
        except (av.error.BlockingIOError, av.error.EOFError):
            break
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _tempo_steps(factor: float) -> list[float]:
    """atempo steps of 0.5-2.0 each (the range where it sounds clean) whose product is `factor`."""
    steps = []
    while factor < 0.5 or factor > 2.0:
        step = 0.5 if factor < 0.5 else 2.0
        steps.append(step)
        factor /= step
    return [*steps, factor]


def pcm_to_float(data: bytes, encoding: str = "pcm16", channels: int = 1) -> np.ndarray:
    """Raw interleaved PCM bytes -> float32 mono. Raises AudioError on a partial sample."""
    width = 2 if encoding == "pcm16" else 4
    if len(data) % (width * channels):
        raise AudioError("invalid_frame",
                         f"Frame of {len(data)} bytes is not a whole number of "
                         f"{encoding} samples for {channels} channel(s).", status=400)
    if encoding == "pcm16":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        samples = require_finite(np.frombuffer(data, dtype="<f4").astype(np.float32))
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV of float32 mono audio."""
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(float_to_pcm16(audio))
    return buf.getvalue()


_CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "opus": "audio/ogg",
                  "aac": "audio/aac", "flac": "audio/flac", "pcm": "audio/pcm", "raw": "audio/pcm"}
_CODECS = {"mp3": ("mp3", "mp3"), "ogg": ("ogg", "libopus"), "opus": ("ogg", "libopus"),
           "aac": ("adts", "aac"), "flac": ("flac", "flac")}


def encode_audio(audio: np.ndarray, sample_rate: int, fmt: str) -> tuple[bytes, str]:
    """float32 mono -> (bytes, content type) in wav, mp3, ogg/opus, aac, flac or raw pcm16."""
    if fmt == "wav":
        return wav_bytes(audio, sample_rate), _CONTENT_TYPES["wav"]
    if fmt in ("pcm", "raw"):
        return float_to_pcm16(audio), _CONTENT_TYPES["pcm"]
    import av

    container_fmt, codec = _CODECS[fmt]
    rate = 48000 if codec == "libopus" else sample_rate
    audio = resample(audio, sample_rate, rate)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (np.clip(audio, -1, 1) * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue(), _CONTENT_TYPES[fmt]


class StreamResampler:
    """Rate conversion for a live stream, stateful so chunk edges leave no clicks."""

    def __init__(self, from_rate: int, to_rate: int = SAMPLE_RATE):
        import av

        self.from_rate, self.to_rate = from_rate, to_rate
        self._swr = av.AudioResampler(format="flt", layout="mono", rate=to_rate) if from_rate != to_rate else None

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if self._swr is None or audio.size == 0:
            return audio.astype(np.float32, copy=False)
        import av

        frame = av.AudioFrame.from_ndarray(audio.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.from_rate
        out = [f.to_ndarray().reshape(-1) for f in self._swr.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class OpusPacketDecoder:
    """Raw Opus packets (one per call, no Ogg container, as WebCodecs/RTP carry them) -> float32 mono 48 kHz."""

    RATE = 48000

    def __init__(self, channels: int = 1):
        import av

        self._codec = av.CodecContext.create("opus", "r")
        self._codec.sample_rate = self.RATE
        self._codec.layout = "stereo" if channels == 2 else "mono"

    def __call__(self, packet: bytes) -> np.ndarray:
        import av

        try:
            frames = self._codec.decode(av.Packet(packet))
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioError("invalid_frame", f"Frame of {len(packet)} bytes is not a valid Opus packet.",
                             status=400) from exc
        out = [_mono(f.to_ndarray(), f.format.is_planar, len(f.layout.channels)) for f in frames]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _mono(samples: np.ndarray, planar: bool, channels: int) -> np.ndarray:
    """PyAV frame array (planar: (channels, n); packed: (1, n * channels)) -> float32 mono."""
    scale = 32768.0 if np.issubdtype(samples.dtype, np.integer) else 1.0
    samples = samples.astype(np.float32) / scale
    return samples.mean(axis=0) if planar else samples.reshape(-1, channels).mean(axis=1)


def content_type(fmt: str) -> str:
    return _CONTENT_TYPES[fmt]


STREAMING_WAV_SIZE = 0xFFFFFFFF
"""Data size in a streamed WAV header: unknown length (players read to the end of the stream)."""


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header for a stream of unknown length (sizes 0xFFFFFFFF, as OpenAI streams wav)."""
    import struct

    return (b"RIFF" + struct.pack("<I", STREAMING_WAV_SIZE) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", STREAMING_WAV_SIZE))


class _Sink:
    """A write-only, non-seekable file for PyAV: the muxer streams (no header rewrites) and we drain it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class StreamEncoder:
    """Incremental encoder beside the decoder: float32 mono chunks in, encoded bytes out as they are ready.

    `encode(chunk)` returns what the codec has produced so far (possibly b""),
    `finish()` flushes the rest. wav gets a streaming header (unknown size);
    pcm/raw is headerless s16le; mp3, ogg/opus, aac (ADTS) and flac go through
    PyAV's muxers on a non-seekable sink, so the bytes can leave at once.
    """

    def __init__(self, fmt: str, sample_rate: int):
        self.fmt, self.sample_rate = fmt, sample_rate
        self.content_type = _CONTENT_TYPES[fmt]
        self._header = wav_stream_header(sample_rate) if fmt == "wav" else b""
        self._out: Any = None
        if fmt not in ("wav", "pcm", "raw"):
            self._open(*_CODECS[fmt])

    def _open(self, container_fmt: str, codec: str) -> None:
        import av

        rate = 48000 if codec == "libopus" else self.sample_rate
        self._resample = StreamResampler(self.sample_rate, rate)
        self._sink = _Sink()
        # Ogg holds a page for up to 1 s by default: flush every 100 ms so opus streams as promptly as mp3.
        options = {"page_duration": "100000"} if container_fmt == "ogg" else {}
        self._out = av.open(self._sink, mode="w", format=container_fmt, options=options)
        self._stream = self._out.add_stream(codec, rate=rate, layout="mono")
        self._rate = rate

    def encode(self, audio: np.ndarray) -> bytes:
        header, self._header = self._header, b""
        if self._out is None:
            return header + float_to_pcm16(audio)
        return self._mux(self._resample(audio))

    def finish(self) -> bytes:
        """The codec's remaining bytes (the stream is complete after these)."""
        if self._out is None:
            header, self._header = self._header, b""
            return header
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        return self._sink.drain()

    def _mux(self, audio: np.ndarray) -> bytes:
        import av

        if audio.size:
            frame = av.AudioFrame.from_ndarray(
                (np.clip(audio, -1, 1) * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self._rate
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        return self._sink.drain()
