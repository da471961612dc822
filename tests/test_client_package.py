"""`clients/` is a package of its own (clients/pyproject.toml): built, installed apart from the server, imported."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from speechcore.settings import REPO_ROOT

CHECK = """
import sys, clients, clients.speech, clients.voice_gateway
server = [m for m in sys.modules if m.split(".")[0] in ("speechcore", "graphs", "deployments", "ray")]
print(clients.__file__, server)
"""


def test_the_client_builds_installs_and_imports_without_the_server(tmp_path):
    source = tmp_path / "clients"          # a copy: setuptools writes build/ beside the sources
    shutil.copytree(REPO_ROOT / "clients", source, ignore=shutil.ignore_patterns("build", "__pycache__", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "wheel"), str(source)],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("speech_serve_client-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {f"clients/{m}.py" for m in ("calls", "live", "sockets", "speech", "voice_gateway")} <= names
    assert not any(n.startswith(("speechcore", "graphs", "tests")) or n.endswith("pyproject.toml") for n in names)
    assert all(f"Requires-Dist: {d}" in meta for d in ("httpx", "websockets", "numpy"))
    assert "voice-gateway = clients.voice_gateway:main" in entry
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"      # not beside the copied sources, not in the repository
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, cwd=elsewhere,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    path, server = out.stdout.split(" ", 1)
    assert path.startswith(str(target)) and server.strip() == "[]", out.stdout
