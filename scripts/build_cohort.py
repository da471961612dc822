"""Fill the AS-norm impostor cohort with recorded voices that are not users (`make cohort`).

Embeds, with the speaker model of a profile (its `speaker_embedding` backend, in-process),
klettres-data's native readers (3 letters joined per utterance) and the asterisk prompt
voices, and stores them in the voiceprint database of SPEECH_DATA_DIR for that model.
Verification then scores on the AS-norm scale from the first registered speaker on.

The embeddings ship in models-in-repo/cohort/<model>.npz (`--export` writes it) and are
used when the installed model gives their probe clip the same embedding
(speechcore/speakers/shipped_cohort.py); `--shipped-only` exits with 3 when they are not
usable, so the Makefile installs the recordings and embeds them only then.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speechcore.backends import load_backend  # noqa: E402
from speechcore.settings import REPO_ROOT, get_settings  # noqa: E402
from speechcore.speakers import shipped_cohort  # noqa: E402
from speechcore.speakers.corpora import asterisk_files, decode_file, klettres_files  # noqa: E402
from speechcore.speakers.store import VoiceprintStore  # noqa: E402
from speechcore.spec import GraphSpec  # noqa: E402


def cohort_utterances(per_speaker: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for lang, letters in klettres_files("alpha").items():
        clips = [decode_file(p) for p in letters[: 3 * per_speaker]]
        out += [(f"klettres:{lang}", np.concatenate(clips[i:i + 3])) for i in range(0, len(clips) - 2, 3)]
    for voice, prompts in asterisk_files().items():
        out += [(f"asterisk:{voice}", decode_file(p)) for p in prompts[:per_speaker]]
    return out


SOURCE = "klettres-data, asterisk-core-sounds"
NEEDS_RECORDINGS = 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/serve_cpu.yaml")
    ap.add_argument("--per-speaker", type=int, default=8)
    ap.add_argument("--rebuild", action="store_true", help="drop the model's cohort and embed it again")
    ap.add_argument("--shipped-only", action="store_true",
                    help=f"use the shipped embeddings or exit with {NEEDS_RECORDINGS} (the recordings are needed)")
    ap.add_argument("--export", action="store_true", help="embed the recordings and write the shipped file")
    args = ap.parse_args()
    (app,) = yaml.safe_load((REPO_ROOT / args.config).read_text())["applications"]
    spec = GraphSpec(**app["args"]).role("speaker_embedding")
    settings = get_settings()
    store = VoiceprintStore.from_settings(settings)
    if store.cohort_size(spec.model) and not (args.rebuild or args.export):   # `make run` calls this every time
        print(f"cohort for {spec.model}: {store.cohort_size(spec.model)} embeddings (kept; --rebuild to redo)")
        return
    embedder = load_backend("speaker_embedding", spec)
    shipped = shipped_cohort.cohort_path(spec.model)
    found = None if args.export else \
        shipped_cohort.load_matching(shipped, lambda a: embedder.embed_batch([a])[0], settings.fixtures_dir)
    if found is not None:
        embeddings, source = found
        source = f"{source} (shipped: {shipped.relative_to(REPO_ROOT)})"
    elif args.shipped_only:
        print(f"no shipped cohort for {spec.model} matches the installed model: embedding the recordings")
        sys.exit(NEEDS_RECORDINGS)
    else:
        utts = cohort_utterances(args.per_speaker)
        if not utts:
            sys.exit("no cohort recordings found: apt-get install klettres-data asterisk-core-sounds-en-g722")
        embeddings, source = embedder.embed_batch([a for _, a in utts]), SOURCE
        if args.export:
            probe = embedder.embed_batch([shipped_cohort.probe_audio(settings.fixtures_dir)])[0]
            shipped_cohort.save(shipped, embeddings, [s for s, _ in utts], probe, SOURCE)
            print(f"wrote {shipped.relative_to(REPO_ROOT)}")
    store.drop_cohort(spec.model)
    size = store.add_cohort(spec.model, embeddings, source=source)
    print(f"cohort for {spec.model}: {size} embeddings from {source} in {store.location}")


if __name__ == "__main__":
    main()
