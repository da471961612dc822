"""Gather real recorded speech for tests and benchmarks into fixtures/.

- LibriVox and "cards" clips with transcripts from Debian's pocketsphinx-testdata
- the 30 s two-speaker phone call (sample.wav + sample.rttm + sample.stm)
  from the pyannote.audio wheel (MIT), fetched with `pip download --no-deps`
- short 48 kHz clips from Debian's alsa-utils
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from speechcore.settings import get_settings  # noqa: E402

POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
ALSA = Path("/usr/share/sounds/alsa")
PYANNOTE = "pyannote.audio==4.0.7"


def copy_tree(src: Path, dest: Path, patterns: list[str]) -> None:
    if not src.exists():
        raise SystemExit(f"{src} is missing: run `make system` (installs pocketsphinx-testdata, alsa-utils)")
    dest.mkdir(parents=True, exist_ok=True)
    for pattern in patterns:
        for f in src.glob(pattern):
            shutil.copy2(f, dest / f.name)


def pyannote_sample(dest: Path) -> None:
    if (dest / "sample.wav").exists():
        return
    cache = get_settings().models_dir / ".wheels"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("pyannote_audio-4.0.7-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), PYANNOTE],
                       check=True)
        wheels = list(cache.glob("pyannote_audio-4.0.7-*.whl"))
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as z:
        for name in ("sample.wav", "sample.rttm", "sample.stm"):
            (dest / name).write_bytes(z.read(f"pyannote/audio/sample/{name}"))


def main() -> None:
    root = get_settings().fixtures_dir
    copy_tree(POCKETSPHINX / "librivox", root / "librivox", ["*.wav", "transcription", "fileids"])
    copy_tree(POCKETSPHINX / "cards", root / "cards", ["*.wav", "cards.transcription"])
    copy_tree(ALSA, root / "alsa", ["*.wav"])
    pyannote_sample(root / "call")
    print(f"fixtures ready in {root}")


if __name__ == "__main__":
    main()
