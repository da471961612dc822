"""faster-whisper (CTranslate2) ASR. The CPU profile's backend and the GPU default.

Cross-request batching: requests that share decoding options are laid end to
end as clips of one array and decoded by faster-whisper's batched pipeline in
one call; segments are mapped back to their request by clip.

Fast window (`options.fast_window_pad_s`, used by requests with
`fast_window`): faster-whisper pads every clip to Whisper's 30 s window, so a
3 s utterance costs a 30 s encoder pass; a fast-window batch is padded only to
its longest clip plus that many seconds. Measured (bench/encoder_window.py):
whisper-base 2.5x faster with the same WER on the recorded fixtures, but the
first word of some synthetic sentences goes wrong, so only live partials ask
for it; tiny.en falls into repetition loops and has no such option.
faster-whisper pads through a module-level `pad_or_trim`; it is replaced once
by a wrapper (when the first model loads) that changes nothing unless the
decoding thread set a window.
"""
from __future__ import annotations

import itertools
import math
import threading
from typing import Any, Callable

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.registry import load_registry, resolve, size_bytes
from speechcore.schemas import ASRRequest, ModelInfo, Segment, TranscribeOptions, Transcript, Word
from speechcore.spec import BackendOptions, BackendSpec


_window = threading.local()
TAIL_S = 1.0        # an uncovered clip tail longer than this is decoded again
TAIL_PASSES = 2


def _install_window_padding() -> None:
    """Route faster-whisper's padding through `_window` (once; a no-op for threads that set no window)."""
    import faster_whisper.transcribe as fw_transcribe
    from faster_whisper.audio import pad_or_trim

    if getattr(fw_transcribe.pad_or_trim, "_speech_window", False):
        return

    def pad_to_window(array: Any, length: int = 3000, *, axis: int = -1) -> Any:
        return pad_or_trim(array, getattr(_window, "frames", None) or length, axis=axis)

    setattr(pad_to_window, "_speech_window", True)
    fw_transcribe.pad_or_trim = pad_to_window


class WhisperOptions(BackendOptions):
    compute_type: str | None = None
    """CTranslate2 compute type; default int8 on CPU, float16 on CUDA."""
    cpu_threads: int = 0
    num_workers: int = 1
    local_files_only: bool = True
    batch_size: int = 8
    """Clips per batched encoder/decoder call inside one pipeline call."""
    fast_window_pad_s: float | None = None


class FasterWhisperASR:
    Options = WhisperOptions

    def __init__(self, spec: BackendSpec):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        _install_window_padding()
        self.spec = spec
        self.path = resolve(spec.model)
        opts = WhisperOptions.model_validate(spec.options)
        compute = opts.compute_type or ("int8" if spec.device == "cpu" else "float16")
        self.model = WhisperModel(self.path, device=spec.device, compute_type=compute,
                                  cpu_threads=opts.cpu_threads, num_workers=opts.num_workers,
                                  local_files_only=opts.local_files_only)
        self.pipeline = BatchedInferencePipeline(self.model)
        self.batch_size = opts.batch_size
        self.fast_window_pad_s = opts.fast_window_pad_s
        self.multilingual = bool(self.model.model.is_multilingual)

    def info(self) -> ModelInfo:
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        entry = load_registry().get(self.spec.model)
        return ModelInfo(role="asr", name=self.spec.model, backend="faster-whisper", device=self.spec.device,
                         path=self.path, size_bytes=size_bytes(self.path),
                         languages=list(_LANGUAGE_CODES) if self.multilingual else ["en"],
                         extra={"description": entry.description if entry else "",
                                "translate": self.multilingual, "fixed_window_s": 30})

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        if not self.multilingual:
            return "en", 1.0
        language, probability, _ = self.model.detect_language(audio[: 30 * SAMPLE_RATE])
        return language, float(probability)

    def transcribe_batch(self, requests: list[ASRRequest],
                         stopped: Callable[[], bool] | None = None) -> list[Transcript]:
        languages = [self._language_for(r) for r in requests]
        results: list[Transcript | None] = [None] * len(requests)
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((languages[i][0],) + r.options.batch_key()[1:], []).append(i)
        for idxs in groups.values():
            group = self._decode_group([requests[i] for i in idxs], languages[idxs[0]][0], stopped or _never)
            for i, segments in zip(idxs, group):
                r = requests[i]
                results[i] = Transcript(
                    text=" ".join(s.text.strip() for s in segments).strip(),
                    language=languages[i][0], language_probability=languages[i][1],
                    duration=len(r.audio) / SAMPLE_RATE, segments=segments, model=self.spec.model)
        return results  # type: ignore[return-value]

    def _language_for(self, r: ASRRequest) -> tuple[str, float]:
        if r.options.language:
            return r.options.language, 1.0
        if not r.clips:
            return ("en", 1.0) if not self.multilingual else ("", 0.0)
        speech = np.concatenate([r.audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in r.clips])
        return self.detect_language(speech)

    def _decode_group(self, reqs: list[ASRRequest], language: str,
                      stopped: Callable[[], bool]) -> list[list[Segment]]:
        """Decode every clip of every request in one batched pipeline call.

        The batched pipeline decodes each clip in one pass (no seek loop): when Whisper ends a clip
        early, the rest of it would be lost. A clip whose segments stop more than `TAIL_S` before its
        end gets its uncovered tail decoded again (batched too), at most `TAIL_PASSES` times.
        Segments come lazily: once `stopped()` (every caller gone), decoding ends at the next one.
        """
        pieces, clips, owners = [], [], []   # owners: (request index, clip start in source, clip start in joined)
        cursor = 0
        for ri, r in enumerate(reqs):
            for start, end in r.clips:
                piece = r.audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
                if piece.size < SAMPLE_RATE // 10:
                    continue
                t0 = cursor / SAMPLE_RATE
                pieces.append(piece)
                cursor += piece.size
                clips.append({"start": t0, "end": cursor / SAMPLE_RATE})
                owners.append((ri, start, t0))
        out: list[list[Segment]] = [[] for _ in reqs]
        if not pieces:
            return out
        joined = np.concatenate(pieces)
        starts = [c["start"] for c in clips]
        todo, first = clips, True
        for _ in range(1 + TAIL_PASSES):
            covered: dict[int, float] = {}
            for seg in self._run_pipeline(joined, todo, reqs[0].options, language, max(p.size for p in pieces),
                                          stopped):
                if not first and _likely_silence(seg):
                    continue
                # by the segment's middle: Whisper's times are on a 20 ms grid, so a clip's first segment
                # can start a little before the clip does and would be given to the previous request
                k = max(0, int(np.searchsorted(starts, (seg.start + seg.end) / 2, side="right")) - 1)
                ri, src_start, joined_start = owners[k]
                out[ri].append(_segment(0, seg, src_start - joined_start))
                covered[k] = max(covered.get(k, clips[k]["start"]), seg.end)
            todo = [{"start": covered[k], "end": c["end"]} for k, c in enumerate(clips)
                    if k in covered and c["end"] - covered[k] > TAIL_S
                    and any(t["start"] <= covered[k] < t["end"] for t in todo)]
            first = False
            if not todo or stopped():
                break
        for segments in out:
            segments.sort(key=lambda s: s.start)
            for i, s in enumerate(segments):
                s.id = i
        return out

    def _run_pipeline(self, audio: np.ndarray, clips: list[dict[str, float]], o: TranscribeOptions, language: str,
                      longest: int, stopped: Callable[[], bool]) -> list[Any]:
        _window.frames = self._window_frames(longest / SAMPLE_RATE) if o.fast_window else None
        try:
            segments, _ = self.pipeline.transcribe(
                audio, language=language or None, task=o.task, clip_timestamps=clips,
                batch_size=self.batch_size, word_timestamps=o.word_timestamps, initial_prompt=o.prompt,
                temperature=o.temperature, beam_size=o.beam_size, without_timestamps=False)
            return list(itertools.takewhile(lambda _: not stopped(), segments))
        finally:
            _window.frames = None

    def _window_frames(self, longest_s: float) -> int | None:
        """Encoder frames (100 per second) for a batch whose longest clip is `longest_s`."""
        if self.fast_window_pad_s is None:
            return None
        return min(3000, 100 * math.ceil(longest_s + self.fast_window_pad_s))


def _likely_silence(seg: Any) -> bool:
    """Whisper's own no-speech rule, applied to tail re-decodes (a tail may be only breath or noise)."""
    return bool(seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0)


def _never() -> bool:
    return False


def _segment(idx: int, seg: Any, shift: float) -> Segment:
    words = None
    if seg.words is not None:
        words = [Word(word=w.word, start=round(w.start + shift, 3), end=round(w.end + shift, 3),
                      probability=float(w.probability)) for w in seg.words]
    return Segment(id=idx, start=round(seg.start + shift, 3), end=round(seg.end + shift, 3), text=seg.text.strip(),
                   tokens=list(seg.tokens), avg_logprob=float(seg.avg_logprob),
                   no_speech_prob=float(seg.no_speech_prob), compression_ratio=float(seg.compression_ratio),
                   temperature=float(seg.temperature or 0.0), words=words)
