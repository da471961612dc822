"""One Ray instance and one running application (the CPU profile, as `serve run` deploys it)
for the whole test session, on a free port so parallel sessions do not collide."""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile

import pytest

# Voiceprints and other state go to a throwaway data dir (Ray workers inherit this environment).
os.environ["SPEECH_DATA_DIR"] = tempfile.mkdtemp(prefix="speech-test-data-")
atexit.register(shutil.rmtree, os.environ["SPEECH_DATA_DIR"], True)
# A short body deadline so the slow-client tests (tests/test_hostile.py) wait seconds, not a minute.
os.environ.setdefault("SPEECH_BODY_TIMEOUT_S", "10")
# The job API's own upload limit (MAX_UPLOAD_BYTES), small so tests/test_jobs_api.py can cross it.
os.environ.setdefault("SPEECH_JOB_MAX_UPLOAD_BYTES", str(3 * 1024 * 1024))
# WebRTC peers gather candidates on loopback only (tests/test_webrtc.py) and time out in seconds, not half a minute.
os.environ.setdefault("SPEECH_WEBRTC_HOST_ADDRESSES", "127.0.0.1")
os.environ.setdefault("SPEECH_WEBRTC_CONNECT_TIMEOUT_S", "8")
os.environ.setdefault("SPEECH_WEBRTC_MEDIA_TIMEOUT_S", "5")

from graphs import launch

CPU_CONFIG = "configs/serve_cpu.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve_config() -> dict:
    """The CPU profile, with the deployments it loads on first use started warm: tests assert on every
    loaded model, and the first-use path has its own test (tests/test_edge_app.py)."""
    config = launch.load_config(CPU_CONFIG, port=free_port())
    for app in config["applications"]:
        for deployment in app.get("deployments", []):
            scaling = deployment.get("autoscaling_config") or {}
            if scaling.get("min_replicas") == 0:
                deployment["autoscaling_config"] = {**scaling, "initial_replicas": 1}
    return config


@pytest.fixture(scope="session")
def base_url(serve_config) -> str:
    launch.start(serve_config)
    url = f"http://127.0.0.1:{serve_config['http_options']['port']}"
    try:
        launch.wait_ready(url, timeout_s=420)
        yield url
    finally:
        launch.stop()


@pytest.fixture(scope="session")
def handles(base_url):
    """Deployment handles of the running app, for calling model deployments directly."""
    from ray import serve

    def get(name: str):
        return serve.get_deployment_handle(name, app_name="speech")

    return get


@pytest.fixture(scope="session")
def pg_url():
    """One throwaway PostgreSQL server for the session (the Debian packages, `make system`)."""
    from tests import pg_server

    if not pg_server.available():
        pytest.fail("PostgreSQL is not installed: `make system` installs the postgresql package")
    with pg_server.postgres() as url:
        yield url
