"""Diarization quality and the job service's speed.

1. DER (collar 0.25 s, optimal speaker mapping) of the CPU pipeline (Silero
   VAD + ERes2Net or Resemblyzer windows + average-linkage clustering, in-process) on the
   pyannote.audio wheel's two-speaker call against its RTTM and on a
   two-speaker conversation built from fixtures (tests/mixes.py), against the
   one-speaker floor (every speech region given to one speaker), with the
   diarization time per audio second.
2. Through the running server (POST /api/transcribe, polling GET /api/jobs
   every 0.5 s): time from upload to completed for a 30 s and a 10 min
   recording, and throughput (jobs/min, audio hours per hour) of N distinct
   30 s jobs submitted at once with SPEECH_JOB_WORKERS=1 and =4 (the app is
   restarted between the two).
Run: .venv/bin/python bench/diarization.py  (starts its own app twice; ~10 min on 2 cores)
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("SPEECH_DATA_DIR", tempfile.mkdtemp(prefix="bench-jobs-"))
from bench.common import free_port, table  # noqa: E402
from graphs import launch  # noqa: E402
from speechcore.audio import decode_audio, wav_bytes  # noqa: E402
from speechcore.pipelines import diarization as d  # noqa: E402
from speechcore.spec import BackendSpec  # noqa: E402
from speechcore.vad import RegionOptions, speech_regions  # noqa: E402
from tests.mixes import two_speaker_mix  # noqa: E402
from tests.speech import CALL  # noqa: E402

JOBS = 3


def region_finder():
    from speechcore.backends.silero_vad import SileroVAD

    vad = SileroVAD(BackendSpec(backend="silero-onnx", model="silero-vad"))
    return lambda a: speech_regions(vad.frame_probs(a), len(a) / 16000, RegionOptions())


def mixed() -> np.ndarray:
    """The built two-speaker mix alone (what the job tables submit)."""
    return two_speaker_mix(region_finder())[0]


EMBEDDERS = [   # (backend, model, the clustering threshold its profile configures)
    ("eres2net-onnx", "eres2net", 0.62),   # the CPU default (configs/serve_cpu.yaml)
    ("resemblyzer", "resemblyzer", 0.3),
]


def der_table() -> np.ndarray:
    from speechcore.roles import ROLES, import_target

    regions_of = region_finder()
    mix, mix_ref, _ = two_speaker_mix(regions_of)
    call = decode_audio(str(CALL))
    rows = []
    for backend, model, threshold in EMBEDDERS:
        cls = import_target(ROLES["speaker_embedding"].backends[backend])
        emb = cls(BackendSpec(backend=backend, model=model, options={"threads": 2}))  # type: ignore[operator]

        async def embed(clip: np.ndarray) -> np.ndarray:
            return emb.embed_batch([clip])[0]

        for name, audio, ref in [("pyannote call (2 women, 30 s)", call,
                                  d.parse_rttm(CALL.with_suffix(".rttm").read_text())),
                                 ("built mix (reader + cards, 28 s)", mix, mix_ref)]:
            regions = regions_of(audio)
            started = time.perf_counter()
            found = asyncio.run(d.diarize(audio, regions, embed, d.DiarizationParams(threshold=threshold)))
            took = time.perf_counter() - started
            floor = d.diarization_error_rate(ref, [d.Turn("one", s, e) for s, e in regions])
            der = d.diarization_error_rate(ref, found.turns)
            rows.append([model, threshold, name, len({t.speaker for t in ref}), len(found.speakers), der, floor,
                         der / floor, took / (len(audio) / 16000)])
    table("DER, collar 0.25 s (CPU pipeline, in-process)",
          ["embedding", "threshold", "recording", "speakers", "found", "DER", "one-speaker floor", "DER / floor",
           "s per audio s"], rows)
    return mix


def distinct(audio: np.ndarray, i: int) -> bytes:
    """The same speech with a different inaudible tail, so SHA-256 dedup does not merge the jobs."""
    return wav_bytes(np.concatenate([audio, np.full(16, 1e-4 * (i + 1), np.float32)]))


def submit(client: httpx.Client, data: bytes) -> str:
    r = client.post("/api/transcribe", files={"file": ("a.wav", io.BytesIO(data), "audio/wav")},
                    data={"language": "en"})
    r.raise_for_status()
    return str(r.json()["id"])


def wait_all(client: httpx.Client, ids: list[str]) -> dict[str, float]:
    done: dict[str, float] = {}
    while len(done) < len(ids):
        for i in ids:
            if i not in done:
                status = client.get(f"/api/jobs/{i}").json()["status"]
                if status == "failed":
                    raise RuntimeError(f"job {i} failed")
                if status == "completed":
                    done[i] = time.perf_counter()
        time.sleep(0.5)
    return done


def with_app(workers: int, fn):
    os.environ["SPEECH_JOB_WORKERS"] = str(workers)
    port = free_port()
    launch.start(launch.load_config("configs/serve_cpu.yaml", port=port))
    url = f"http://127.0.0.1:{port}"
    try:
        launch.wait_ready(url, 600)
        with httpx.Client(base_url=url, timeout=600) as client:
            submit(client, distinct(np.zeros(16000, np.float32), 999))   # warm the job service
            return fn(client)
    finally:
        launch.stop()


def latency(client: httpx.Client, mix: np.ndarray) -> list[list]:
    rows = []
    long = np.concatenate([mix] * int(np.ceil(600 / (len(mix) / 16000))))[: 600 * 16000]
    for name, audio in [("30 s", mix[: 30 * 16000]), ("10 min", long)]:
        started = time.perf_counter()
        job = submit(client, distinct(audio, 0))
        took = wait_all(client, [job])[job] - started
        rows.append([name, len(audio) / 16000, took, took / (len(audio) / 16000)])
    return rows


def throughput(client: httpx.Client, mix: np.ndarray, phase: int) -> tuple[float, float]:
    """Jobs of bytes no earlier phase sent (the data dir persists across the restarts: dedup would
    answer them at once)."""
    started = time.perf_counter()
    ids = [submit(client, distinct(mix, 100 * phase + i)) for i in range(JOBS)]
    took = max(wait_all(client, ids).values()) - started
    return JOBS / took * 60, JOBS * len(mix) / 16000 / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--throughput-only", action="store_true", help="skip DER and the upload-to-completed table")
    ap.add_argument("--der-only", action="store_true", help="only the DER table (no server)")
    args = ap.parse_args()
    mix = mixed() if args.throughput_only else der_table()
    if args.der_only:
        return
    one: dict[str, object] = {}

    def first(client: httpx.Client) -> None:
        if not args.throughput_only:
            one["latency"] = latency(client, mix)
        one["throughput"] = throughput(client, mix, 1)

    with_app(1, first)
    four = with_app(4, lambda c: throughput(c, mix, 4))
    if not args.throughput_only:
        table("Upload to completed (1 worker, diarized transcription, whisper-base)",
              ["recording", "audio s", "seconds", "s per audio s"], one["latency"])  # type: ignore[arg-type]
    base = one["throughput"][0]  # type: ignore[index]
    table(f"Throughput, {JOBS} distinct {len(mix) / 16000:.0f} s jobs submitted at once",
          ["workers", "jobs/min", "audio hours/hour", "vs 1 worker"],
          [[1, *one["throughput"], 1.0], [4, *four, four[0] / base]])  # type: ignore[misc]


if __name__ == "__main__":
    main()
