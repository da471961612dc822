"""Batch transcription throughput: audio hours per hour on this machine, in one run, for the same files:
1. `python -m batch.transcribe` (Ray Data: decode tasks, VAD and ASR actors; includes Ray's start-up),
2. the same files uploaded to POST /v1/audio/transcriptions (4 at a time, server started beforehand),
3. faster-whisper in a plain loop (WhisperModel.transcribe with its Silero VAD filter, one file at a time).
Same model (whisper-base int8, 2 threads), word timestamps on everywhere.
Run: `make bench-batch` (about 10 minutes on 2 cores).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, table  # noqa: E402
from speechcore.audio import decode_audio  # noqa: E402
from speechcore.registry import resolve  # noqa: E402
from speechcore.settings import REPO_ROOT  # noqa: E402
from tests.speech import CALL, cards, librivox  # noqa: E402

COPIES = int(os.environ.get("BENCH_BATCH_COPIES", "6"))


def corpus(folder: Path) -> tuple[list[Path], float]:
    """The fixture recordings (LibriVox, cards, the call), `COPIES` times under distinct names."""
    sources = [*librivox(), *cards(), CALL]
    files = []
    for k in range(COPIES):
        for src in sources:
            files.append(folder / f"{k}-{src.parent.name}-{src.name}")
            shutil.copy(src, files[-1])
    return files, COPIES * sum(decode_audio(s.read_bytes()).size / 16000 for s in sources)


def plain_loop(files: list[Path]) -> float:
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve("whisper-base"), device="cpu", compute_type="int8", cpu_threads=2)
    started = time.perf_counter()
    for f in files:
        segments, _ = model.transcribe(str(f), vad_filter=True, word_timestamps=True, beam_size=5)
        list(segments)
    return time.perf_counter() - started


def ray_data(folder: Path) -> float:
    out = folder.parent / "out.parquet"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "batch.transcribe", str(folder), str(out), "--quiet"], check=True,
                   cwd=REPO_ROOT, env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True)
    return time.perf_counter() - started


def server(files: list[Path], concurrency: int = 4) -> float:
    from graphs import launch

    port = free_port()
    launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))
    url = f"http://127.0.0.1:{port}"
    launch.wait_ready(url, 600)

    async def upload_all() -> None:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=900) as http:
            async def one(f: Path) -> None:
                async with gate:
                    r = await http.post("/v1/audio/transcriptions", files={"file": (f.name, f.read_bytes())},
                                        data={"model": "whisper-1", "response_format": "verbose_json",
                                              "timestamp_granularities[]": ["segment", "word"]})
                    r.raise_for_status()
            await asyncio.gather(*(one(f) for f in files))
    try:
        started = time.perf_counter()
        asyncio.run(upload_all())
        return time.perf_counter() - started
    finally:
        launch.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        files, audio_s = corpus(folder)
        loop_s = plain_loop(files)
        batch_s = ray_data(folder)
        serve_s = server(files)
    rate = lambda s: audio_s / s  # noqa: E731   audio hours per hour = audio seconds per second
    table(f"Batch transcription: {len(files)} files, {audio_s / 60:.1f} min of audio, whisper-base int8 (same run)",
          ["method", "wall (s)", "audio-hours per hour", "vs plain loop"],
          [["faster-whisper, plain loop (baseline)", round(loop_s, 1), round(rate(loop_s), 1), 1.0],
           ["python -m batch.transcribe (Ray Data, incl. start-up)", round(batch_s, 1), round(rate(batch_s), 1),
            round(loop_s / batch_s, 2)],
           ["POST /v1/audio/transcriptions, 4 at a time", round(serve_s, 1), round(rate(serve_s), 1),
            round(loop_s / serve_s, 2)]])


if __name__ == "__main__":
    main()
