"""Recorded human speech that Debian packages install (used for training, evaluation, cohorts).

- klettres-data: letters and syllables read by one native speaker per language (~20 languages, ogg).
- asterisk-core-sounds-{en,fr}-g722: two professional prompt voices (Allison, en-US; June, fr-CA),
  wideband G.722 without a container.
Missing packages simply yield nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from speechcore.audio import decode_audio

KLETTRES = Path("/usr/share/klettres")
ASTERISK = Path("/usr/share/asterisk/sounds")
ASTERISK_VOICES = ("en_US_f_Allison", "fr_CA_f_June")


def klettres_files(kind: str = "*") -> dict[str, list[Path]]:
    """Language -> its recordings (`kind` "alpha" for letters, "syllab" for syllables, "*" for both)."""
    out: dict[str, list[Path]] = {}
    for path in sorted(KLETTRES.glob(f"*/{kind}/*.ogg")):
        out.setdefault(path.parent.parent.name, []).append(path)
    return out


def asterisk_files() -> dict[str, list[Path]]:
    return {v: sorted((ASTERISK / v).glob("*.g722")) for v in ASTERISK_VOICES if (ASTERISK / v).is_dir()}


def decode_file(path: Path) -> np.ndarray:
    return decode_audio(path.read_bytes(), container_format="g722" if path.suffix == ".g722" else None)
