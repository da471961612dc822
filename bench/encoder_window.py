"""Encoder window: Whisper's padded 30 s window vs the speech plus a little padding.

Same clips, VAD chunks, model, threads and process; prints decode time and
WER for each model and window. Run: PYTHONPATH=. .venv/bin/python bench/encoder_window.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import table  # noqa: E402
from speechcore.audio import decode_audio  # noqa: E402
from speechcore.backends.silero_vad import SileroVAD  # noqa: E402
from speechcore.backends.whisper_asr import FasterWhisperASR  # noqa: E402
from speechcore.schemas import ASRRequest, TranscribeOptions  # noqa: E402
from speechcore.spec import BackendSpec  # noqa: E402
from speechcore.pipelines.transcription import PlanLimits  # noqa: E402
from speechcore.textmetrics import wer  # noqa: E402
from speechcore.vad import merge_for_decoding, speech_regions  # noqa: E402
from tests.speech import CALL, call_transcript, cards, librivox  # noqa: E402

WINDOWS = {"30 s (faster-whisper default)": None, "speech + 1 s": 1.0, "speech + 3 s": 3.0}


def main() -> None:
    vad = SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad"))
    clips = []
    for path, ref in {**librivox(), **cards(), CALL: call_transcript()}.items():
        audio = decode_audio(path.read_bytes())
        regions = speech_regions(vad.frame_probs(audio), len(audio) / 16000)
        clips.append((audio, merge_for_decoding(regions, PlanLimits.max_chunk_s, PlanLimits.merge_gap_s), ref))
    words = sum(len(ref.split()) for *_, ref in clips)
    rows = []
    for model in ("whisper-tiny.en", "whisper-base"):
        baseline = None
        for label, pad in WINDOWS.items():
            options = {"cpu_threads": 2} | ({"fast_window_pad_s": pad} if pad is not None else {})
            asr = FasterWhisperASR(BackendSpec(backend="faster-whisper", model=model, options=options))
            asr.transcribe_batch([ASRRequest(*clips[0][:2], TranscribeOptions(language="en"))])  # warm up
            started, errors = time.perf_counter(), 0.0
            for audio, chunks, ref in clips:
                out = asr.transcribe_batch([ASRRequest(audio, chunks, TranscribeOptions(language="en", fast_window=True))])[0]
                errors += wer(ref, out.text) * len(ref.split())
            took = time.perf_counter() - started
            baseline = baseline or took
            rows.append([model, label, round(took, 2), round(baseline / took, 2), f"{100 * errors / words:.1f} %"])
    table(f"Encoder window: {len(clips)} clips (LibriVox, cards, the call), {words} words",
          ["model", "window", "decode time (s)", "speed-up", "WER"], rows)


if __name__ == "__main__":
    main()
