"""The type checker is part of the suite: strict on speechcore/, annotated code elsewhere.

A failure prints mypy's report; `make test` fails with it.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from speechcore.settings import REPO_ROOT

CHECKS = {
    "strict core": ["--strict", "--no-warn-return-any", "speechcore"],
    "deployments and graphs": ["deployments", "graphs/app.py", "graphs/services.py", "graphs/ingress.py",
                               "graphs/transcription.py", "graphs/speech.py", "graphs/voiceprints.py", "graphs/jobs.py", "graphs/offload.py", "graphs/diarization.py",
                               "graphs/live.py", "graphs/tts_session.py", "graphs/voice_chat.py", "graphs/transport.py", "graphs/middleware.py", "graphs/openapi.py",
                               "graphs/voice_layer.py", "graphs/voice_layer_backend.py",
                               "graphs/routers"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_mypy_passes(name):
    out = subprocess.run([sys.executable, "-m", "mypy", *CHECKS[name]], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
