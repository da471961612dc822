"""GPU-profile backends, exercised where this machine allows it."""
from __future__ import annotations

import json
import subprocess

import pytest

from speechcore.backends import load_backend
from speechcore.settings import REPO_ROOT, get_settings
from speechcore.spec import BackendSpec

NEMO_PYTHON = REPO_ROOT / ".venv-nemo" / "bin" / "python"


@pytest.mark.skipif(not NEMO_PYTHON.exists(), reason="run `make test` (builds .venv-nemo) to exercise NeMo")
def test_nemo_backend_loads_a_nemo_file_and_transcribes_in_batches():
    out = subprocess.run([str(NEMO_PYTHON), "scripts/check_nemo_backend.py", str(get_settings().fixtures_dir)],
                         capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
                         env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["backend"] == "nemo" and result["n"] == 2 and result["texts_are_str"]
    assert result["segments"] == [[[0.0, 2.0], [2.0, 7.1]], [[0.0, 2.0], [2.0, 2.99]]]
    assert result["size_bytes"] > 10_000


@pytest.mark.parametrize("role,backend", [("speaker_embedding", "speechbrain-ecapa"), ("tts", "coqui-xtts"),
                                          ("llm", "vllm")])
def test_missing_gpu_library_is_a_clear_error(role, backend):
    with pytest.raises(RuntimeError, match="requirements-gpu.txt"):
        load_backend(role, BackendSpec(backend=backend, model="x", device="cuda"))
