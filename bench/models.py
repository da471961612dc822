"""The CPU models side by side, in-process, with each model's ratio against the baseline measured in this run.

    python bench/models.py asr        # WER per model and set (+ faster-whisper's own VAD path), RTF 1 and 8 requests
    python bench/models.py batching   # Moonshine: pad every clip to the batch's longest vs batch by length
    python bench/models.py live       # live turns: final and partial latency p50/p95 and WER, Moonshine vs tiny.en
    python bench/models.py speakers   # speaker EER and FAR/FRR at the configured thresholds: ERes2Net vs Resemblyzer

Models run as the CPU profile configures them (configs/serve_cpu.yaml: threads,
batching); files go through the server's own plan (Silero VAD regions ->
planned requests -> one batched decode -> merge), the same steps the ASR
deployment runs, without Ray. Live latency is the decode time of a turn's
final (its whole audio) and of a partial (its first half) with the options a
live session sends; the end-to-end live numbers (VAD, transport, queueing)
come from bench/live_transcription.py, which serves the same models.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import table  # noqa: E402
from speechcore.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from speechcore.backends import load_backend  # noqa: E402
from speechcore.pipelines.transcription import (PlanLimits, asr_requests, decode_options,  # noqa: E402
                                                merge_transcripts, plan_limits, plan_transcription)
from speechcore.schemas import ASRRequest, TranscribeOptions  # noqa: E402
from speechcore.settings import REPO_ROOT  # noqa: E402
from speechcore.spec import BackendSpec, GraphSpec  # noqa: E402
from speechcore.textmetrics import normalize, wer  # noqa: E402
from speechcore.vad import speech_regions  # noqa: E402
from tests.speech import CALL, call_transcript, call_turns, cards, librivox  # noqa: E402

SPEC = GraphSpec(**yaml.safe_load((REPO_ROOT / "configs/serve_cpu.yaml").read_text())["applications"][0]["args"])
ASR_MODELS = ["whisper-base", "whisper-tiny.en", "moonshine-base"]
BASELINE = "whisper-base"
PAUSE_S = 1.0


def asr_backend(name: str, **options: Any) -> Any:
    spec = SPEC.asr[name]
    return load_backend("asr", BackendSpec(backend=spec.backend, model=spec.model, device="cpu",
                                           options={**spec.options, **options}))


def vad() -> Any:
    return load_backend("vad", SPEC.role("vad"))


def long_files() -> dict[str, tuple[np.ndarray, str]]:
    """Recordings joined with short pauses: every LibriVox clip, then every cards clip (as issue 10 built them)."""
    gap = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    out = {}
    for label, clips in (("LibriVox joined", librivox()), ("cards joined", cards())):
        audio = np.concatenate([x for p in clips for x in (decode_audio(p.read_bytes()), gap)])
        out[label] = (audio, " ".join(clips.values()))
    return out


def eval_sets() -> dict[str, list[tuple[np.ndarray, str]]]:
    sets: dict[str, list[tuple[np.ndarray, str]]] = {
        label: [(decode_audio(p.read_bytes()), ref) for p, ref in clips.items()]
        for label, clips in (("LibriVox (5 clips)", librivox()), ("cards (5 clips)", cards()))}
    sets["two-speaker call (30 s)"] = [(decode_audio(CALL.read_bytes()), call_transcript())]
    sets["long files with pauses (2)"] = list(long_files().values())
    return sets


def server_path(model: Any, detector: Any, limits: PlanLimits | None = None,
                fast_window: bool = False) -> Callable[[list[np.ndarray]], list[str]]:
    """The server's file path in one process: VAD regions -> plan -> one batched decode -> merge."""
    limits = limits or plan_limits(model.info().extra)

    def run(audios: list[np.ndarray]) -> list[str]:
        options = TranscribeOptions(language="en", fast_window=fast_window)
        plans = [plan_transcription(speech_regions(detector.frame_probs(a), len(a) / SAMPLE_RATE), limits)
                 for a in audios]
        requests = [asr_requests(a, p, decode_options(p, options)) for a, p in zip(audios, plans)]
        parts = model.transcribe_batch([r for rs in requests for r in rs])
        out, k = [], 0
        for a, p, rs in zip(audios, plans, requests):
            out.append(merge_transcripts(p, parts[k:k + len(rs)], len(a) / SAMPLE_RATE, options).text)
            k += len(rs)
        return out
    return run


def library_path(name: str) -> Callable[[list[np.ndarray]], list[str]]:
    """What a user would call instead: faster-whisper's WhisperModel.transcribe with its own VAD option."""
    from faster_whisper import WhisperModel

    from speechcore.registry import resolve

    opts = SPEC.asr[name].options
    model = WhisperModel(resolve(name), device="cpu", compute_type=opts.get("compute_type", "int8"),
                         cpu_threads=opts.get("cpu_threads", 0))

    def run(audios: list[np.ndarray]) -> list[str]:
        return [" ".join(s.text.strip() for s in model.transcribe(a, language="en", beam_size=5,
                                                                  vad_filter=True)[0]) for a in audios]
    return run


def pooled_wer(pairs: list[tuple[str, str]]) -> float:
    words = sum(len(normalize(ref)) for ref, _ in pairs)
    return sum(wer(ref, hyp) * len(normalize(ref)) for ref, hyp in pairs) / max(1, words)


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def asr() -> None:
    sets, detector = eval_sets(), vad()
    clip = sets["LibriVox (5 clips)"][0][0]
    eight = [a for a, _ in sets["LibriVox (5 clips)"] + sets["cards (5 clips)"]][:8]
    accuracy, speed = [], []
    paths = [(m, "server path", lambda m=m: server_path(asr_backend(m), detector)) for m in ASR_MODELS]
    paths += [(m, "faster-whisper vad_filter", lambda m=m: library_path(m)) for m in ASR_MODELS if "whisper" in m]
    base: dict[str, float] = {}
    for name, how, make in paths:
        run = make()
        run([clip])   # warm
        for label, items in sets.items():
            elapsed, texts = timed(run, [a for a, _ in items])
            w = pooled_wer([(ref, t) for (_, ref), t in zip(items, texts)])
            rtf = elapsed / (sum(len(a) for a, _ in items) / SAMPLE_RATE)
            accuracy.append([name, how, label, f"{100 * w:.1f} %", round(rtf, 3)])
        if how == "server path":
            one = statistics.median(timed(run, [clip])[0] for _ in range(3)) / (len(clip) / SAMPLE_RATE)
            many = timed(run, eight)[0] / (sum(len(a) for a in eight) / SAMPLE_RATE)
            base.setdefault("one", one)
            base.setdefault("many", many)
            speed.append([name, round(one, 3), round(base["one"] / one, 2), round(many, 3), round(base["many"] / many, 2)])
    table("WER per model and set (pooled over the set's words), and RTF of the whole set",
          ["model", "path", "set", "WER", "RTF"], accuracy)
    table(f"RTF: one 7.1 s clip (median of 3) and 8 clips in one batch; speed-up vs {BASELINE}",
          ["model", "RTF 1 clip", "speed-up", "RTF 8 clips", "speed-up"], speed)


def parity() -> None:
    """Issue 10 part 3: long files with pauses through the server's plan vs faster-whisper's own VAD path;
    the other sets' WER shows what a plan change costs on single recordings."""
    sets, detector = eval_sets(), vad()
    files = sets.pop("long files with pauses (2)")
    others = [item for items in sets.values() for item in items]
    audio_s = sum(len(a) for a, _ in files) / SAMPLE_RATE
    rows = []
    for name in ("whisper-base", "whisper-tiny.en"):
        model = asr_backend(name)
        paths = [("faster-whisper vad_filter", library_path(name))]
        paths += [("server plan, a window per chunk (before)", server_path(model, detector,
                                                                           PlanLimits(pack_windows=False))),
                  ("server plan, chunks packed into windows (now)", server_path(model, detector))]
        for _, run in paths:
            run([files[0][0][: 5 * SAMPLE_RATE]])   # warm
        # rounds interleave the paths, so a noisy minute on a shared machine hits all of them alike
        runs = [[timed(run, [a for a, _ in files]) for _, run in paths] for _ in range(4)]
        base = None
        for i, (how, run) in enumerate(paths):
            elapsed, texts = min((r[i] for r in runs), key=lambda r: r[0])   # the least disturbed run
            base = base or elapsed
            single = run([a for a, _ in others])
            rows.append([name, how, f"{100 * pooled_wer([(ref, t) for (_, ref), t in zip(files, texts)]):.1f} %",
                         round(elapsed, 2), round(elapsed / base, 2),
                         f"{100 * pooled_wer([(ref, t) for (_, ref), t in zip(others, single)]):.1f} %"])
    table(f"Long files with pauses ({len(files)} files, {audio_s:.0f} s): WER and seconds (best of 4) against "
          "faster-whisper's own VAD path; WER of the single recordings (LibriVox, cards, call)",
          ["model", "path", "WER long files", "seconds", "x library", "WER single recordings"], rows)


def mixed_clips() -> list[tuple[np.ndarray, str]]:
    """Clips of very different lengths: the LibriVox and cards clips and the call's turns of >= 1 s."""
    items = [(decode_audio(p.read_bytes()), ref) for clips in (librivox(), cards()) for p, ref in clips.items()]
    call = decode_audio(CALL.read_bytes())
    items += [(call[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)], "") for _, s, e in call_turns() if e - s >= 1.0]
    return items


def batching() -> None:
    items = mixed_clips()
    requests = [ASRRequest(a, [(0.0, len(a) / SAMPLE_RATE)], TranscribeOptions(language="en")) for a, _ in items]
    alone_model = asr_backend("moonshine-base", max_batch=1)
    alone_t, alone = timed(alone_model.transcribe_batch, requests)
    rows = [["one clip per call", round(alone_t, 2), 1.0, "-", _ref_wer(items, alone)]]
    for label, ratio in (("pad to the batch's longest", None), ("batch by length (<= 1.5x)", 1.5),
                         ("batch by length (<= 1.2x)", 1.2)):
        model = asr_backend("moonshine-base", max_batch=8, group_ratio=ratio)
        model.transcribe_batch(requests[:2])
        elapsed, out = timed(model.transcribe_batch, requests)
        changed = sum(normalize(a.text) != normalize(b.text) for a, b in zip(alone, out))
        rows.append([label, round(elapsed, 2), round(alone_t / elapsed, 2), f"{changed}/{len(items)}",
                     _ref_wer(items, out)])
    audio_s = sum(len(a) for a, _ in items) / SAMPLE_RATE
    table(f"Moonshine batching: {len(items)} clips of {min(len(a) for a, _ in items) / SAMPLE_RATE:.1f}-"
          f"{max(len(a) for a, _ in items) / SAMPLE_RATE:.1f} s ({audio_s:.0f} s), max 8 per batch",
          ["batching", "seconds", "speed-up vs one per call", "texts changed vs alone", "WER (LibriVox+cards)"], rows)


def _ref_wer(items: list[tuple[np.ndarray, str]], out: list[Any]) -> str:
    return f"{100 * pooled_wer([(ref, t.text) for (_, ref), t in zip(items, out) if ref]):.1f} %"


def live() -> None:
    turns = [(a, ref) for a, ref in mixed_clips() if ref]
    rows, base = [], {}
    for name in ("whisper-tiny.en", "moonshine-base", "whisper-base"):
        model = asr_backend(name)
        final_opts = TranscribeOptions(language="en")
        partial_opts = TranscribeOptions(language="en", beam_size=1, fast_window=True)
        model.transcribe_batch([ASRRequest(turns[0][0], [(0.0, 1.0)], final_opts)])
        finals, partials, texts = [], [], []
        for audio, _ in turns:
            half = audio[: len(audio) // 2]
            t, (out,) = timed(model.transcribe_batch, [ASRRequest(audio, [(0.0, len(audio) / SAMPLE_RATE)], final_opts)])
            finals.append(t)
            texts.append(out.text)
            partials.append(timed(model.transcribe_batch, [ASRRequest(half, [(0.0, len(half) / SAMPLE_RATE)],
                                                                      partial_opts)])[0])
        p50, p95 = float(np.percentile(finals, 50)), float(np.percentile(finals, 95))
        base.setdefault("p50", p50)
        rows.append([name, round(1000 * p50), round(1000 * p95), round(base["p50"] / p50, 2),
                     round(1000 * float(np.percentile(partials, 50))), round(1000 * float(np.percentile(partials, 95))),
                     f"{100 * pooled_wer([(ref, t) for (_, ref), t in zip(turns, texts)]):.1f} %"])
    table(f"Live turns ({len(turns)} LibriVox + cards clips): decode time of a final (whole turn) and a partial "
          "(first half); speed-up vs whisper-tiny.en",
          ["model", "final p50 ms", "final p95 ms", "speed-up p50", "partial p50 ms", "partial p95 ms", "final WER"],
          rows)


def speakers() -> None:
    from bench.speaker_eval import trials, utterances
    from speechcore.speakers.scoring import Thresholds, equal_error_rate

    utts = utterances()
    labels = [lab for lab, _ in utts]
    audio_s = sum(len(a) for _, a in utts) / SAMPLE_RATE
    resemblyzer = BackendSpec(backend="resemblyzer", model="resemblyzer", device="cpu",
                              options={"threads": 1, "cosine_threshold": 0.75, "as_norm_threshold": 2.4})
    rows = []
    for spec in (resemblyzer, SPEC.role("speaker_embedding")):
        model = load_backend("speaker_embedding", spec)
        model.embed_batch([utts[0][1]])
        elapsed, emb = timed(model.embed_batch, [a for _, a in utts])
        scored = trials(labels, np.stack(emb))
        limits = Thresholds.from_options(spec.options)
        for k, scale, threshold in ((1, "cosine", limits.cosine), (2, "AS-norm", limits.as_norm)):
            genuine = np.array([r[k] for r in scored if r[0]])
            impostor = np.array([r[k] for r in scored if not r[0]])
            eer, at_eer = equal_error_rate(list(genuine), list(impostor))
            rows.append([spec.model, scale, f"{100 * eer:.2f} %", round(at_eer, 3), threshold,
                         f"{100 * float(np.mean(genuine < threshold)):.2f} %",
                         f"{100 * float(np.mean(impostor >= threshold)):.2f} %", round(elapsed / audio_s, 4)])
    table(f"Speaker verification: {len(utts)} utterances of {len(set(labels))} real voices ({audio_s:.0f} s), "
          f"every pair a trial; AS-norm cohort: the other speakers",
          ["model", "score", "EER", "thr@EER", "configured thr", "FRR", "FAR", "wall s per audio s"], rows)


def main() -> None:
    parts = {"asr": asr, "batching": batching, "live": live, "speakers": speakers, "parity": parity}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", choices=[*parts, []], default=list(parts))
    for name in ap.parse_args().parts or parts:
        parts[name]()


if __name__ == "__main__":
    main()
