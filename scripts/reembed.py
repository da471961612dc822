"""Re-enrol every stored speaker with the configured embedding model, from the sample audio kept with it.

Voiceprints of two embedding models are not comparable (the API answers 409 for
a speaker without samples of the current model). After changing the model
(e.g. Resemblyzer -> ERes2Net), `make reembed` embeds each stored sample's
audio with the profile's model and adds it as a sample of that model, next to
the old one, so no enrolment is lost and switching back needs nothing.
Idempotent: samples that already have an embedding of the model are skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speechcore.audio import decode_audio  # noqa: E402
from speechcore.backends import load_backend  # noqa: E402
from speechcore.settings import REPO_ROOT, get_settings  # noqa: E402
from speechcore.speakers.store import VoiceprintStore  # noqa: E402
from speechcore.spec import GraphSpec  # noqa: E402


def reembed(store: VoiceprintStore, embedder: object, model: str) -> tuple[int, int]:
    """(samples added, samples without audio that cannot be re-embedded)."""
    todo, missing = store.samples_to_reembed(model)
    for speaker_id, rel, seconds in todo:
        audio = decode_audio(store.path_of(rel).read_bytes())
        (embedding,) = embedder.embed_batch([audio])   # type: ignore[attr-defined]
        store.add_embedding(speaker_id, model, embedding, rel, seconds)
    return len(todo), missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/serve_cpu.yaml")
    args = ap.parse_args()
    (app,) = yaml.safe_load((REPO_ROOT / args.config).read_text())["applications"]
    spec = GraphSpec(**app["args"]).role("speaker_embedding")
    store = VoiceprintStore.from_settings(get_settings())
    added, missing = reembed(store, load_backend("speaker_embedding", spec), spec.model)
    print(f"re-embedded {added} samples with {spec.model} in {store.location}"
          + (f"; {missing} samples have no stored audio (enroll those speakers again)" if missing else ""))


if __name__ == "__main__":
    main()
