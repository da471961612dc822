"""A deployment that cannot be placed (the GPU profile on a machine without a GPU)
is reported by /health (degraded), /readyz (503) and /status, and requests to it
fail fast with 503. The GPU profile's scale-to-zero deployment (asr_parakeet)
is not placeable either, so it is not ready."""
from __future__ import annotations

import time

import httpx

from graphs import launch
from tests.speech import CALL


def test_gpu_profile_without_gpu_is_reported_not_hung(base_url, serve_config):
    gpu = launch.load_config("serve_config.yaml")["applications"][0]
    gpu.update(name="gpu", route_prefix="/gpu")
    for d in gpu["deployments"]:
        if d["name"] == "ingress":
            d["ray_actor_options"] = {"num_cpus": 0}
    launch.deploy({**serve_config, "applications": [*serve_config["applications"], gpu]})
    try:
        launch.wait_ready(base_url, timeout_s=120, path="/gpu/healthz")
        deadline = time.time() + 60
        while time.time() < deadline:
            status = httpx.get(f"{base_url}/gpu/status").json()
            rows = {r["deployment"]: r for r in status["deployments"]}
            if all("cannot be placed" in r["message"] for r in rows.values()):
                break
            time.sleep(1)
        assert status["status"] == "degraded"
        for name, row in rows.items():
            assert not row["ready"], row
            assert "cannot be placed" in row["message"] and "GPU" in row["message"], row
        assert rows["asr_parakeet"]["scales_to_zero"] and not rows["asr_parakeet"]["ready"]
        health = httpx.get(f"{base_url}/gpu/health", timeout=5)   # the ingress serves: degraded, not down
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert set(health.json()["not_ready"]) == set(rows)
        ready = httpx.get(f"{base_url}/gpu/readyz", timeout=5)    # orchestrators: not ready
        assert ready.status_code == 503 and set(ready.json()["not_ready"]) == set(rows)
        r = httpx.post(f"{base_url}/gpu/v1/speech/transcribe", files={"audio": ("a.wav", CALL.read_bytes())},
                       timeout=10)   # refused at once, not queued behind a replica that never starts
        assert r.status_code == 503 and "cannot be placed" in r.json()["error"]["message"]
        # the CPU application keeps answering beside it
        assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}
        assert httpx.get(f"{base_url}/readyz").status_code == 200
    finally:
        launch.deploy(serve_config)
