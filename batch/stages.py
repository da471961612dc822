"""The batch pipeline's stages: callables over column batches (dict of numpy arrays), Ray-free.

Ray Data runs them as `map_batches` stages (decode as CPU tasks, VAD and ASR as
actor pools with their own resources); tests and a plain loop can call them
directly. They use the server's own pieces: `speechcore.audio.decode_audio`,
the profile's VAD, speaker-embedding and ASR backends, the planning/merging
steps of `speechcore.pipelines.transcription` and the diarization of
`speechcore.pipelines.diarization`, so a file gets the transcript and the
speakers the server would give it. A file that fails carries its `error` through the later
stages instead of stopping the run.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from batch.files import read_bytes
from speechcore.audio import SAMPLE_RATE, decode_audio
from speechcore.errors import ApiError
from speechcore.pipelines.diarization import DiarizationParams, Span, Turn, diarize_batched, speaker_at
from speechcore.pipelines.segments import sentence_segments
from speechcore.pipelines.transcription import (PlannedRequest, asr_requests, merge_transcripts, plan_limits,
                                                plan_transcription, speech_sample)
from speechcore.schemas import ASRRequest, Transcript, TranscribeOptions
from speechcore.settings import get_settings
from speechcore.spec import BackendSpec
from speechcore.vad import RegionOptions, speech_regions

Batch = dict[str, np.ndarray]
log = logging.getLogger(__name__)


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _error_text(exc: Exception) -> str:
    """What a row's `error` says: the message for our own errors, the exception type otherwise."""
    return f"{exc.code}: {exc.message}" if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"[:300]


def decode(batch: Batch) -> Batch:
    """path -> 16 kHz mono audio, duration, error (the server's decoder and length limit)."""
    audios, durations, errors = [], [], []
    for path in batch["path"]:
        try:
            audio = decode_audio(read_bytes(str(path)), max_seconds=get_settings().max_audio_seconds)
            audios.append(audio)
            errors.append("")
        except Exception as exc:  # a bad file becomes a row with an error, never a failed run
            audios.append(np.zeros(0, dtype=np.float32))
            errors.append(_error_text(exc))
        durations.append(audios[-1].size / SAMPLE_RATE)
    return {"path": batch["path"], "audio": _objects(audios), "duration": np.array(durations),
            "error": np.array(errors, dtype=object)}


class VAD:
    """audio -> speech regions (flat [start, end, ...] seconds), one batched Silero pass per batch."""

    def __init__(self, spec: dict[str, Any]):
        from speechcore.backends import load_backend

        self.backend = load_backend("vad", BackendSpec(**spec))

    def __call__(self, batch: Batch) -> Batch:
        todo = [i for i, e in enumerate(batch["error"]) if not e]
        regions: list[np.ndarray] = [np.zeros(0)] * len(batch["path"])
        errors = list(batch["error"])
        try:
            probs = self.backend.frame_probs_batch([batch["audio"][i] for i in todo])
            for i, p in zip(todo, probs):
                found = speech_regions(p, batch["audio"][i].size / SAMPLE_RATE, RegionOptions())
                regions[i] = np.array([x for r in found for x in r], dtype=np.float64)
        except Exception as exc:
            log.exception("VAD failed on a batch")
            for i in todo:
                errors[i] = _error_text(exc)
        return {**batch, "regions": _objects(regions), "error": _objects(errors)}


class Diarize:
    """audio + regions -> who spoke when (`turns_json`), with the profile's speaker-embedding model in
    this actor and the server's clustering; a file that fails gets an `error`, the others go on."""

    def __init__(self, spec: dict[str, Any]):
        from speechcore.backends import load_backend

        self.spec = BackendSpec(**spec)
        self.backend = load_backend("speaker_embedding", self.spec)
        self.params = DiarizationParams.from_options(self.spec.options)

    def __call__(self, batch: Batch) -> Batch:
        turns, errors = [""] * len(batch["path"]), list(batch["error"])
        for i, error in enumerate(errors):
            if error:
                continue
            try:
                found = diarize_batched(batch["audio"][i], spans(batch["regions"][i]), self.backend.embed_batch,
                                        self.params)
                turns[i] = json.dumps([[t.speaker, t.start, t.end] for t in found.turns])
            except Exception as exc:
                log.exception("diarization failed on %s", batch["path"][i])
                errors[i] = _error_text(exc)
        return {**batch, "turns_json": _objects(turns), "error": _objects(errors)}


def spans(regions: np.ndarray) -> list[Span]:
    """Flat [start, end, start, end, ...] seconds (how regions travel between stages) -> spans."""
    return [(float(regions[j]), float(regions[j + 1])) for j in range(0, len(regions), 2)]


class ASR:
    """audio + regions -> transcript, planned and merged as the server does; requests of all files
    in the batch go to the model together (one batched decode per language and options)."""

    def __init__(self, spec: dict[str, Any], options: dict[str, Any]):
        from speechcore.backends import load_backend

        self.spec = BackendSpec(**spec)
        self.backend = load_backend("asr", self.spec)
        self.options = TranscribeOptions(**options)

    def __call__(self, batch: Batch) -> Batch:
        n = len(batch["path"])
        out: dict[str, list[Any]] = {"language": [""] * n, "text": [""] * n, "segments_json": [""] * n,
                                     "error": list(batch["error"])}
        todo = [i for i in range(n) if not out["error"][i]]
        turns = batch.get("turns_json")
        try:
            for i, t in zip(todo, self.transcribe([batch["audio"][i] for i in todo],
                                                  [batch["regions"][i] for i in todo])):
                out["language"][i], out["text"][i] = t.language, t.text
                who = [Turn(*x) for x in json.loads(turns[i])] if turns is not None else None
                out["segments_json"][i] = json.dumps([_segment_dict(s, who) for s in t.segments])
        except Exception as exc:
            log.exception("ASR failed on a batch")
            for i in todo:
                out["error"][i] = _error_text(exc)
        model = np.array([self.spec.model] * n, dtype=object)
        return {"path": batch["path"], "duration": batch["duration"], "model": model,
                **{k: _objects(v) for k, v in out.items()}}

    def transcribe(self, audios: list[np.ndarray], regions: list[np.ndarray]) -> list[Transcript]:
        """The server's file pipeline (graphs/transcription.py) with the model in this process."""
        limits = plan_limits(self.backend.info().extra)
        plans = [plan_transcription(spans(r), limits) for r in regions]
        requests: list[ASRRequest] = []
        for audio, plan in zip(audios, plans):
            requests += asr_requests(audio, plan, self._options_for(audio, plan))
        results = iter(self.backend.transcribe_batch(requests) if requests else [])
        out = []
        for audio, plan in zip(audios, plans):
            parts = [next(results) for _ in plan]
            t = merge_transcripts(plan, parts, audio.size / SAMPLE_RATE, self.options, self.spec.model)
            out.append(replace(t, segments=sentence_segments(t.segments)))
        return out

    def _options_for(self, audio: np.ndarray, plan: list[PlannedRequest]) -> TranscribeOptions:
        """Word timestamps on (sentence segments, words column); one language per recording, as the server."""
        options = replace(self.options, word_timestamps=True)
        if len(plan) > 1 and not options.language:
            options.language, _ = self.backend.detect_language(speech_sample(audio, plan))
        return options


def _segment_dict(seg: Any, turns: list[Turn] | None) -> dict[str, Any]:
    """A sentence segment; with `turns`, its speaker: the one whose turns cover most of it."""
    d = asdict(seg)
    speaker = speaker_at(seg.start, seg.end, turns) if turns else d.get("speaker")
    return {"id": d["id"], "start": d["start"], "end": d["end"], "text": d["text"].strip(),
            "avg_logprob": d["avg_logprob"], "no_speech_prob": d["no_speech_prob"],
            "speaker": speaker, "words": [{**w, "word": w["word"].strip()} for w in d["words"] or []]}
