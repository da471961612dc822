"""Fill the AS-norm impostor cohort with recorded voices that are not users (`make cohort`).

Embeds, with the speaker model of a profile (its `speaker_embedding` backend, in-process),
klettres-data's native readers (3 letters joined per utterance) and the asterisk prompt
voices, and stores them in the voiceprint database of SPEECH_DATA_DIR for that model.
Verification then scores on the AS-norm scale from the first registered speaker on.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/serve_cpu.yaml")
    ap.add_argument("--per-speaker", type=int, default=8)
    ap.add_argument("--rebuild", action="store_true", help="drop the model's cohort and embed it again")
    args = ap.parse_args()
    (app,) = yaml.safe_load((REPO_ROOT / args.config).read_text())["applications"]
    spec = GraphSpec(**app["args"]).role("speaker_embedding")
    store = VoiceprintStore.from_settings(get_settings())
    if store.cohort_size(spec.model) and not args.rebuild:   # `make run` calls this every time
        print(f"cohort for {spec.model}: {store.cohort_size(spec.model)} embeddings (kept; --rebuild to redo)")
        return
    utts = cohort_utterances(args.per_speaker)
    if not utts:
        sys.exit("no cohort recordings found: apt-get install klettres-data asterisk-core-sounds-en-g722")
    embedder = load_backend("speaker_embedding", spec)
    embeddings = embedder.embed_batch([a for _, a in utts])
    if args.rebuild:
        store.drop_cohort(spec.model)
    size = store.add_cohort(spec.model, embeddings, source="klettres-data, asterisk-core-sounds")
    print(f"cohort for {spec.model}: {size} embeddings ({len({s for s, _ in utts})} speakers) in {store.location}")


if __name__ == "__main__":
    main()
