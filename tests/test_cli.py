"""The voice-gateway CLI against the running server."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from speechcore.textmetrics import wer
from tests.speech import best_error, librivox


def cli(base_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clients.voice_gateway", "--url", base_url, *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_transcribe_speak_and_list(base_url, tmp_path):
    clip, ref = next(iter(librivox().items()))
    out = cli(base_url, "transcribe", str(clip), "--language", "en")
    assert out.returncode == 0 and wer(ref, out.stdout) <= 0.15, out.stderr
    wav = tmp_path / "greeting.wav"

    def error() -> float:
        out = cli(base_url, "speak", "Hello world, this is a test.", "--output", str(wav))
        assert out.returncode == 0 and wav.stat().st_size > 20_000, out.stderr
        back = cli(base_url, "transcribe", str(wav), "--language", "en")
        return wer("Hello world, this is a test.", back.stdout)
    assert best_error(error, 0.2) <= 0.2
    models = cli(base_url, "model", "list").stdout
    assert "whisper-base" in models and "whisper-tiny.en" in models and "loaded" in models
    assert "en_US-joe-medium" in cli(base_url, "tts", "voices", "--language", "en").stdout


def test_cli_reports_errors_clearly(base_url, tmp_path):
    out = cli(base_url, "transcribe", str(tmp_path / "missing.wav"))
    assert out.returncode != 0 and "no such file" in out.stderr
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    out = cli(base_url, "transcribe", str(bad))
    assert out.returncode != 0 and "invalid_audio_format" in out.stderr
    out = cli("http://127.0.0.1:9", "model", "list")
    assert out.returncode != 0 and "cannot reach" in out.stderr


def test_voice_gateway_is_installed_as_a_command(base_url):
    """`make run` / `make deps` installs the project into .venv, which puts `voice-gateway` on its PATH."""
    command = Path(sys.executable).parent / "voice-gateway"
    assert command.is_file(), "voice-gateway is not installed: run `make deps`"
    out = subprocess.run([str(command), "--url", base_url, "model", "list"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "whisper-tiny.en" in out.stdout, out.stderr
    usage = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60)
    assert usage.stdout.startswith("usage: voice-gateway") and "transcribe" in usage.stdout
