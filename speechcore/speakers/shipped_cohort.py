"""The AS-norm impostor cohort shipped with the repository (`models-in-repo/cohort/<model>.npz`).

Embedding the cohort's 817 s of Debian recordings took 46 s on 2 cores, a sixth
of a fresh `make run`. The embeddings are data like a model's weights: computed
once by `scripts/build_cohort.py --export` and stored with the embedding of a
probe clip from the fixtures. They are used only when the installed model embeds
that clip the same way (cosine >= MATCH); otherwise the cohort is embedded from
the recordings as before.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from speechcore.audio import decode_audio
from speechcore.settings import REPO_ROOT
from speechcore.speakers.scoring import cosine

COHORT_DIR = REPO_ROOT / "models-in-repo" / "cohort"
PROBE_CLIP = "librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
MATCH = 0.999


def cohort_path(model: str) -> Path:
    return COHORT_DIR / f"{model}.npz"


def probe_audio(fixtures: Path) -> np.ndarray:
    return decode_audio((fixtures / PROBE_CLIP).read_bytes())


def save(path: Path, embeddings: list[np.ndarray], speakers: list[str], probe: np.ndarray, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, embeddings=np.stack(embeddings).astype(np.float32), speakers=np.array(speakers),
                        probe=probe.astype(np.float32), probe_clip=np.array(PROBE_CLIP), source=np.array(source))


def load_matching(path: Path, embed: Callable[[np.ndarray], np.ndarray],
                  fixtures: Path) -> tuple[list[np.ndarray], str] | None:
    """(embeddings, source) when the file exists and `embed` gives its probe clip the stored embedding."""
    if not path.is_file() or not (fixtures / PROBE_CLIP).is_file():
        return None
    with np.load(path) as data:
        stored, embeddings, source = data["probe"], data["embeddings"], str(data["source"])
    probe = embed(probe_audio(fixtures))
    if cosine(probe, stored) < MATCH:
        return None
    return list(embeddings), source
