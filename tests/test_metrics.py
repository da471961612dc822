"""Metrics (graphs/metrics.py): Ray-free pieces, then a scrape of the running app's Prometheus endpoint
after real requests (an upload, a refused upload, a live session), checking each metric's values."""
from __future__ import annotations

import asyncio
import time
import urllib.request

import httpx
import numpy as np
import pytest

from bench.live_client import stream_platform
from graphs.metrics import SessionClock, record
from speechcore.audio import decode_audio
from speechcore.schemas import Transcript
from speechcore.sessions.events import AudioIn, AudioOut, Final
from tests.speech import librivox


def test_session_clock_maps_a_final_to_when_its_audio_arrived(monkeypatch):
    seen = []
    monkeypatch.setattr("graphs.metrics.record", lambda name, value, **tags: seen.append((name, round(value, 3))))
    clock = SessionClock("platform")
    for i in range(10):                                  # 10 chunks of 0.1 s, one every 0.1 s from t=100
        clock.observe(AudioIn(np.zeros(1600, dtype=np.float32)), now=100.0 + i / 10)
    final = Final(0, Transcript("hi", "en", 1.0, 1.0, []), start_s=0.2, end_s=0.45)
    clock.observe(final, now=101.5)                      # its last voice (0.45 s) arrived in chunk 4 (t=100.4)
    assert seen == [("end_of_turn", 1.1)]
    assert clock.arrival(16000 * 5) is None              # not arrived yet
    clock.observe(AudioOut(np.zeros(2400, dtype=np.float32), 24000), now=102.0)   # the agent's first audio
    clock.observe(AudioOut(np.zeros(2400, dtype=np.float32), 24000), now=102.1)   # later frames: not counted
    assert seen == [("end_of_turn", 1.1), ("voice_to_voice", 1.6)]


def test_recording_outside_ray_is_a_no_op():
    record("requests", 1, family="openai", route="/x", status="2xx")


def _scrape(port: int) -> dict[str, list[tuple[dict, float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name.startswith("ray_speech_"):
                out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _total(samples, name, **labels) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


WANTED = ["ray_speech_requests_total", "ray_speech_request_errors_total", "ray_speech_request_latency_seconds_count",
          "ray_speech_model_latency_seconds_count", "ray_speech_queue_wait_seconds_count",
          "ray_speech_batch_size_count", "ray_speech_audio_seconds_total", "ray_speech_real_time_factor_count",
          "ray_speech_live_sessions", "ray_speech_end_of_turn_latency_seconds_count"]


@pytest.mark.timeout(300)
def test_metrics_are_scraped_with_sane_values_after_real_requests(base_url):
    import ray

    clip, ref = next(iter(librivox().items()))
    r = httpx.post(f"{base_url}/v1/audio/transcriptions", files={"file": (clip.name, clip.read_bytes())},
                   data={"model": "whisper-1", "language": "en"}, timeout=300)
    assert r.status_code == 200 and "Dashwood" in r.json()["text"]
    bad = httpx.post(f"{base_url}/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio")},
                     data={"model": "whisper-1"}, timeout=60)
    assert bad.status_code == 400
    audio = np.concatenate([decode_audio(clip.read_bytes()), np.zeros(16000, dtype=np.float32)])
    live = asyncio.run(stream_platform(base_url.replace("http", "ws", 1), audio, speed=4.0))
    assert live.finals() and "Dashwood" in live.finals()[0]["text"]

    port = ray.nodes()[0]["MetricsExportPort"]
    deadline, samples = time.time() + 90, {}
    while time.time() < deadline:            # Ray exports what processes record every few seconds
        samples = _scrape(port)
        if all(name in samples for name in WANTED) and _total(samples, "ray_speech_end_of_turn_latency_seconds_count"):
            break
        time.sleep(3)
    assert [n for n in WANTED if n not in samples] == []
    openai = {"family": "openai", "route": "/v1/audio/transcriptions"}
    assert _total(samples, "ray_speech_requests_total", status="2xx", **openai) >= 1
    assert _total(samples, "ray_speech_request_errors_total", status="400", **openai) >= 1
    latency = _total(samples, "ray_speech_request_latency_seconds_sum", **openai)
    assert 0.05 < latency < 300
    asr = {"deployment": "asr_whisper_base"}
    assert _total(samples, "ray_speech_model_latency_seconds_count", method="transcribe_batch", **asr) >= 1
    assert _total(samples, "ray_speech_queue_wait_seconds_count", lane="bulk", **asr) >= 1
    assert _total(samples, "ray_speech_audio_seconds_total", **asr) >= 7.0        # the 7.1 s clip at least
    rtf = (_total(samples, "ray_speech_real_time_factor_sum", **asr)
           / _total(samples, "ray_speech_real_time_factor_count", **asr))
    assert 0.001 < rtf < 5
    assert _total(samples, "ray_speech_batch_size_count", **asr) >= 1
    assert all(v >= 0 for _, v in samples["ray_speech_live_sessions"])
    eot_n = _total(samples, "ray_speech_end_of_turn_latency_seconds_count", family="platform")
    eot = _total(samples, "ray_speech_end_of_turn_latency_seconds_sum", family="platform") / eot_n
    assert eot_n >= 1 and 0.05 < eot < 30
