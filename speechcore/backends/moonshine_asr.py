"""Moonshine base (English) ASR on onnxruntime: a batched greedy decode loop over the converted ONNX files.

Moonshine's encoder runs on the clip as it is (no 30 s window), so its cost
grows with the speech, which suits short live turns. The files come from
moonshine-cpp's ORT models, converted once at install time to fp32 ONNX
(scripts/convert_moonshine.py); the tokenizer is useful-moonshine-onnx's
`tokenizer.json`. Neither package's code runs here.

Batching: the encoder takes no attention mask, so a clip padded with silence
is encoded with that silence (and the decoder attends to it). Clips are
therefore batched by length (`group_ratio`: the longest clip of a batch is at
most this many times the shortest); `group_ratio: null` pads every clip to the
longest of the batch. bench/models.py measures both. Moonshine gives no word
timestamps and does not translate; its info says so, and requests asking for
either answer 400 naming the model (graphs.transcription.check_model_supports).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from speechcore.audio import SAMPLE_RATE
from speechcore.backends.onnx_session import cpu_session_options
from speechcore.registry import load_registry, resolve, size_bytes
from speechcore.schemas import ASRRequest, ModelInfo, Segment, Transcript
from speechcore.spec import BackendOptions, BackendSpec

START, EOS = 1, 2
LAYERS, KV_HEADS, HEAD_DIM = 8, 8, 52          # Moonshine base
TOKENS_PER_S, MIN_TOKENS = 6.5, 8               # decode budget: speech runs at about 3-4 tokens a second
MIN_S, MAX_S = 0.1, 64.0                        # the clip lengths Moonshine accepts


class MoonshineOptions(BackendOptions):
    threads: int = 1
    """Intra-op threads per session; one was faster than two on the busy 2-core machine."""
    max_batch: int = 8
    """Clips per encoder/decoder call."""
    group_ratio: float | None = 1.5
    """Batch clips whose lengths differ by at most this factor; None pads each batch to its longest clip."""


class MoonshineModel:
    """Encoder + merged decoder (with KV cache) + tokenizer; `generate` decodes a batch of clips greedily."""

    def __init__(self, model_dir: str | Path, threads: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        options = cpu_session_options(threads)
        self.encoder = ort.InferenceSession(str(model_dir / "encoder_model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(model_dir / "decoder_model_merged.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.cache_names = [i.name for i in self.decoder.get_inputs() if i.name.startswith("past_key_values")]

    def generate(self, clips: list[np.ndarray], stopped: Callable[[], bool] | None = None) -> list[str]:
        """The text of each clip, decoded together (zero-padded to the longest); clips of 0.1-64 s."""
        longest = max(c.size for c in clips)
        audio = np.zeros((len(clips), longest), dtype=np.float32)
        for i, c in enumerate(clips):
            audio[i, :c.size] = c
        hidden = self.encoder.run(None, {"input_values": audio})[0]
        budget = max(MIN_TOKENS, math.ceil(longest / SAMPLE_RATE * TOKENS_PER_S))
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip()
                for t in self._decode(hidden, budget, stopped or _never)]

    def _decode(self, hidden: np.ndarray, budget: int, stopped: Callable[[], bool]) -> list[list[int]]:
        batch = hidden.shape[0]
        cache = {name: np.zeros((batch, KV_HEADS, 0, HEAD_DIM), dtype=np.float32) for name in self.cache_names}
        ids = np.full((batch, 1), START, dtype=np.int64)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        done = np.zeros(batch, dtype=bool)
        for step in range(budget):
            logits, *present = self.decoder.run(None, {"input_ids": ids, "encoder_hidden_states": hidden,
                                                       "use_cache_branch": np.array([step > 0]), **cache})
            nxt = logits[:, -1].argmax(-1)
            for i in np.flatnonzero(~done):
                if nxt[i] == EOS:
                    done[i] = True
                else:
                    tokens[i].append(int(nxt[i]))
            if done.all() or stopped():
                break
            ids = nxt[:, None].astype(np.int64)
            for name, value in zip(self.cache_names, present):
                if step == 0 or ".decoder." in name:     # cross-attention keys/values are computed once
                    cache[name] = value
        return tokens


def length_batches(lengths: list[int], max_batch: int, ratio: float | None) -> list[list[int]]:
    """Indices of clips grouped into batches: by ascending length, a new batch when it is full or (with
    `ratio`) when a clip is more than `ratio` times the batch's shortest. Pure, for the unit tests."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        if (current is None or len(current) >= max_batch
                or (ratio is not None and lengths[i] > ratio * max(1, lengths[current[0]]))):
            batches.append([i])
        else:
            current.append(i)
    return batches


class MoonshineASR:
    Options = MoonshineOptions

    def __init__(self, spec: BackendSpec):
        self.spec = spec
        self.path = resolve(spec.model)
        self.options = MoonshineOptions.model_validate(spec.options)
        self.model = MoonshineModel(self.path, self.options.threads)

    def info(self) -> ModelInfo:
        entry = load_registry().get(self.spec.model)
        return ModelInfo(role="asr", name=self.spec.model, backend="moonshine-onnx", device=self.spec.device,
                         path=self.path, size_bytes=size_bytes(self.path), languages=["en"],
                         extra={"description": entry.description if entry else "", "translate": False,
                                "word_timestamps": False})

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        return "en", 1.0

    def transcribe_batch(self, requests: list[ASRRequest],
                         stopped: Callable[[], bool] | None = None) -> list[Transcript]:
        """Every clip of every request, batched by length; one segment per clip (no finer timing)."""
        owners, pieces = _pieces(requests)
        texts: list[str] = [""] * len(pieces)
        for batch in length_batches([p.size for p in pieces], self.options.max_batch, self.options.group_ratio):
            if stopped and stopped():
                break
            for i, text in zip(batch, self.model.generate([pieces[i] for i in batch], stopped)):
                texts[i] = text
        segments: list[list[Segment]] = [[] for _ in requests]
        for (ri, start, end), text in zip(owners, texts):
            if text:
                segments[ri].append(Segment(id=len(segments[ri]), start=round(start, 3), end=round(end, 3),
                                            text=text))
        return [Transcript(text=" ".join(s.text for s in segs), language="en", language_probability=1.0,
                           duration=len(r.audio) / SAMPLE_RATE, segments=segs, model=self.spec.model)
                for r, segs in zip(requests, segments)]


def _pieces(requests: list[ASRRequest]) -> tuple[list[tuple[int, float, float]], list[np.ndarray]]:
    """(request index, start s, end s) and samples of each decodable clip; clips over 64 s are split."""
    owners: list[tuple[int, float, float]] = []
    pieces: list[np.ndarray] = []
    for ri, r in enumerate(requests):
        for start, end in r.clips:
            for s in np.arange(start, end, MAX_S):
                e = min(end, s + MAX_S)
                piece = r.audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)]
                if piece.size >= MIN_S * SAMPLE_RATE:
                    owners.append((ri, float(s), float(e)))
                    pieces.append(piece)
    return owners, pieces


def _never() -> bool:
    return False
