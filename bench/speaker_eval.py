"""Speaker verification EER and thresholds of the CPU speaker model on the real speech at hand.

Protocol: every recording available here is cut into utterances of one speaker
(fixtures: the two women of the pyannote call by its RTTM turns >= 1.5 s, the
LibriVox reader's 5 clips, the cards speaker's 5 clips, the alsa voice's 8 clips;
Debian packages when installed: the two asterisk prompt voices, 20 prompts each,
and klettres-data, one native reader per language, 3 letters joined per utterance,
8 utterances per language). Every pair of utterances is a trial: genuine when
both come from one speaker, impostor otherwise. Scores: raw cosine of the
Resemblyzer embeddings (the deployment's backend, in-process), and AS-norm
against a cohort made of the utterances of every speaker not in the trial.
Prints EER, the threshold at the EER and the threshold for 1 % false accepts.
"""
from __future__ import annotations

import itertools
import time
import numpy as np
import yaml

from speechcore.audio import decode_audio
from speechcore.backends.resemblyzer_embedding import ResemblyzerEmbedding
from speechcore.speakers.corpora import asterisk_files, decode_file, klettres_files
from speechcore.settings import REPO_ROOT
from speechcore.speakers.scoring import Thresholds, as_norm, equal_error_rate, threshold_at_far
from speechcore.spec import GraphSpec
from tests.speech import CALL, FIXTURES, call_turns

CPU_SPEC = GraphSpec(**yaml.safe_load((REPO_ROOT / "configs/serve_cpu.yaml").read_text())["applications"][0]["args"]
                     ).role("speaker_embedding")


def utterances() -> list[tuple[str, np.ndarray]]:
    out = []
    call = decode_audio(CALL.read_bytes())
    out += [(f"call:{spk}", call[int(s * 16000):int(e * 16000)]) for spk, s, e in call_turns() if e - s >= 1.5]
    for group in ("librivox", "cards", "alsa"):
        out += [(group, decode_audio(p.read_bytes())) for p in sorted((FIXTURES / group).glob("*.wav"))
                if p.stem != "Noise"]
    for voice, prompts in asterisk_files().items():
        out += [(f"asterisk:{voice}", decode_file(p)) for p in prompts[:40:2]]
    for lang, letters in klettres_files("alpha").items():
        clips = [decode_file(p) for p in letters[:24]]
        out += [(f"klettres:{lang}", np.concatenate(clips[i:i + 3])) for i in range(0, len(clips) - 2, 3)]
    return out


def trials(labels: list[str], emb: np.ndarray, top_n: int = 200):
    cos = emb @ emb.T
    rows = []
    for i, j in itertools.combinations(range(len(labels)), 2):
        cohort = emb[[k for k, lab in enumerate(labels) if lab not in (labels[i], labels[j])]]
        norm = as_norm(float(cos[i, j]), emb[i], emb[j], cohort, top_n)
        rows.append((labels[i] == labels[j], float(cos[i, j]), norm))
    return rows


def report(name: str, genuine: list[float], impostor: list[float], configured: float) -> None:
    eer, thr = equal_error_rate(genuine, impostor)
    frr, far = np.mean(np.array(genuine) < configured), np.mean(np.array(impostor) >= configured)
    print(f"| {name:22s} | {len(genuine):7d} | {len(impostor):8d} | {eer:6.2%} | {thr:8.3f} | "
          f"{threshold_at_far(impostor, 0.01):9.3f} | {configured:6.2f}: FRR {frr:6.2%}, FAR {far:6.2%} |")


def main() -> None:
    t0 = time.time()
    utts = utterances()
    labels = [lab for lab, _ in utts]
    model = ResemblyzerEmbedding(CPU_SPEC)
    emb = np.stack(model.embed_batch([a for _, a in utts]))
    rows = trials(labels, emb)
    print(f"{len(utts)} utterances of {len(set(labels))} speakers, {len(rows)} trials "
          f"({time.time() - t0:.0f} s)\n")
    print("| score                  | genuine | impostor |  EER   | thr@EER  | thr@FAR1% | configured threshold |")
    print("|------------------------|---------|----------|--------|----------|-----------|----------------------|")
    thresholds = Thresholds.from_options(CPU_SPEC.options)
    for k, name, configured in ((1, "cosine", thresholds.cosine), (2, "AS-norm", thresholds.as_norm)):
        report(name, [r[k] for r in rows if r[0]], [r[k] for r in rows if not r[0]], configured)
    for name, prefixes in (("cosine, fixtures only", ("call:", "librivox", "cards", "alsa")),
                           ("cosine, call only", ("call:",))):
        keep = [i for i, lab in enumerate(labels) if lab.startswith(prefixes)]
        pairs = [(labels[i] == labels[j], float(emb[i] @ emb[j])) for i, j in itertools.combinations(keep, 2)]
        report(name, [s for g, s in pairs if g], [s for g, s in pairs if not g], thresholds.cosine)

if __name__ == "__main__":
    main()
