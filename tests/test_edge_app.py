"""A second application beside the session's, as a client meets it through Serve's proxy:
every model deployment autoscales from zero (`min_replicas: 0`), and it runs with `API_KEY`
(the alias of SPEECH_API_KEY) and one CORS origin, passed to its replicas as runtime_env
env_vars. Only its ingress starts until a request wakes what it needs."""
from __future__ import annotations

import asyncio
import copy
import json
import time

import httpx
import pytest

from graphs import launch
from speechcore.textmetrics import wer
from tests.speech import librivox

KEY = "edge-test-key"
ORIGIN = "https://app.example"
CLIP, REF = next(iter(librivox().items()))


@pytest.fixture(scope="module")
def edge(base_url, serve_config):
    app = copy.deepcopy(serve_config["applications"][0])
    app.update(name="edge", route_prefix="/edge",
               runtime_env={"env_vars": {"API_KEY": KEY, "SPEECH_CORS_ORIGINS": ORIGIN}})
    for d in app["deployments"]:
        if "autoscaling_config" in d:
            d["autoscaling_config"] = {**d["autoscaling_config"], "min_replicas": 0, "initial_replicas": 0}
    launch.deploy({**serve_config, "applications": [*serve_config["applications"], app]})
    try:
        launch.wait_ready(base_url, timeout_s=180, path="/edge/readyz")   # public: no key needed
        yield f"{base_url}/edge"
    finally:
        launch.deploy(serve_config)


def rows(edge: str) -> dict[str, dict]:
    body = httpx.get(f"{edge}/status", headers={"X-API-Key": KEY}, timeout=30).json()
    return {r["deployment"]: r for r in body["deployments"]}


def test_deployments_scaled_to_zero_are_ready_and_a_request_wakes_one(edge):
    before = rows(edge)
    assert all(r["ready"] and r["scales_to_zero"] and r["replicas"] == 0 for r in before.values()), before
    assert httpx.get(f"{edge}/health").json() == {"status": "ok"}
    r = httpx.post(f"{edge}/v1/speech/transcribe", headers={"Authorization": f"Bearer {KEY}"},
                   files={"audio": ("clip.wav", CLIP.read_bytes())},
                   data={"model": "whisper-tiny.en", "language": "en"}, timeout=300)
    assert r.status_code == 200, r.text                  # reached the deployment and woke it, no 503
    assert wer(REF, r.json()["text"]) <= 0.2, r.json()
    deadline = time.time() + 60
    while time.time() < deadline and not rows(edge)["asr_whisper_tiny_en"]["replicas"]:
        time.sleep(1)
    after = rows(edge)
    assert after["asr_whisper_tiny_en"]["replicas"] >= 1 and after["vad"]["replicas"] >= 1
    assert after["asr_whisper_base"]["replicas"] == 0 and after["llm"]["replicas"] == 0   # untouched: still asleep


def test_api_key_on_http_in_every_family_shape(edge):
    r = httpx.get(f"{edge}/status")
    assert r.status_code == 401 and r.json() == {"detail": "Unauthorized"}
    assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{edge}/v1/speech/models").json() == {"error": {"code": "unauthorized",
                                                                       "message": "Unauthorized"}}
    assert httpx.get(f"{edge}/v1/models").json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{edge}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{edge}/v1/models", headers={"X-API-Key": KEY}).status_code == 200
    for public in ("/health", "/healthz", "/readyz", "/openapi.json"):
        assert httpx.get(f"{edge}{public}").status_code == 200, public


def test_websocket_without_the_key_is_refused_before_upgrade(edge):
    import websockets
    from websockets.exceptions import InvalidStatus

    url = edge.replace("http", "ws", 1) + "/v1/speech/stream"

    async def attempt(headers):
        async with websockets.connect(url, additional_headers=headers, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "config", "encoding": "pcm16", "sample_rate": 16000}))
            await ws.send(json.dumps({"type": "end"}))
            async for _ in ws:
                pass
            return ws.close_code

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt({}))
    assert refused.value.response.status_code == 403      # the HTTP handshake is refused: no socket opens
    with pytest.raises(InvalidStatus):
        asyncio.run(attempt({"X-API-Key": "wrong"}))
    assert asyncio.run(attempt({"X-API-Key": KEY})) == 1000


def test_cors_preflight_and_headers_follow_the_setting(edge, base_url):
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    r = httpx.options(f"{edge}/v1/audio/transcriptions", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "POST" in r.headers["access-control-allow-methods"]
    r = httpx.get(f"{edge}/v1/models", headers={"Origin": ORIGIN})      # even a 401 carries CORS headers
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(f"{edge}/v1/audio/transcriptions", headers={**preflight, "Origin": "https://evil.example"})
    assert other.status_code == 403 and other.json()["error"]["type"] == "permission_error"
    assert "access-control-allow-origin" not in other.headers
    none = httpx.options(f"{base_url}/transcribe", headers=preflight)   # session app: no origins configured
    assert none.status_code == 403 and "SPEECH_CORS_ORIGINS" in none.json()["detail"]
