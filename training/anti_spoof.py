"""Train the small anti-spoofing detector shipped in models-in-repo/anti-spoof-lfb/ (`make train-anti-spoof`).

Real speech: recorded human voices from Debian packages (klettres-data: letters and
syllables read by native speakers of ~20 languages; asterisk-core-sounds-*-g722:
two studio prompt voices) and the test fixtures. Synthetic speech: the TTS engines
installed here (Piper joe, espeak-ng voices, festival diphone and HTS voices, flite).

Protocol (held-out data never seen in training):
- real: klettres languages HELD_OUT_LANGS, the fr_CA asterisk voice, and every fixture
  (LibriVox reader, cards, the 2-speaker call, alsa) are test-only speakers;
- fake: sentences after TRAIN_SENTENCES are test-only for the seen engines, and the
  whole `flite` engine is never seen (it is the held-out engine).
Both classes get the same augmentation (gain, codec round trip, added noise), so
the recording chain is not a shortcut. Clips are cut into <= 3 s windows.
Writes the ONNX model (features standardised inside the graph; output P(real))
and a JSON card with the measured EERs and the three mode thresholds.
"""
from __future__ import annotations

import argparse
import json
import pickle
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from speechcore.antispoof.features import DIM, NAME, spoof_features
from speechcore.audio import decode_audio, encode_audio, resample
from speechcore.settings import REPO_ROOT, get_settings
from speechcore.speakers.corpora import asterisk_files, decode_file, klettres_files
from speechcore.speakers.scoring import equal_error_rate, threshold_at_far

OUT_DIR = REPO_ROOT / "models-in-repo" / "anti-spoof-lfb"
HELD_OUT_ASTERISK = "fr_CA_f_June"
HELD_OUT_LANGS = {"en", "en_GB", "fr", "it", "ru", "hu"}
TRAIN_SENTENCES = 40
WINDOW_S = 3.0
SEED = 7

SENTENCES = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Please call me back when you get this message.", "Your account balance is four hundred dollars.",
    "I would like to book a table for two at eight.", "The meeting has been moved to Thursday afternoon.",
    "Can you confirm the delivery address for me?", "Ten of clubs, four queen of clubs, seven of hearts.",
    "Thank you for calling, how can I help you today?", "Press one for sales or two for support.",
    "The weather is lovely today, so we will walk to the river.", "My voice is my password, verify me.",
    # held-out sentences (test only)
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.", "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.", "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.", "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.", "What joy there is in living.",
    "Please transfer fifty dollars to my savings account.", "I forgot my card number, can you help?",
    "We will arrive at the station around noon.", "The quarterly report is due next Monday.",
]

ESPEAK_VOICES = ["en-us", "en", "en+f3", "en+m3", "en-us+f2", "en-gb-scotland", "fr", "de", "es"]
FESTIVAL_VOICES = ["voice_kal_diphone", "voice_ked_diphone", "voice_cmu_us_slt_arctic_hts"]
FLITE_VOICES = ["kal16", "awb", "rms", "slt"]


def _run_to_audio(cmd: list[str], wav: Path, stdin: str | None = None) -> np.ndarray:
    subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True, timeout=120)
    return decode_audio(wav.read_bytes())


def synthesize(engine: str, voice: str, text: str, tmp: Path, piper=None) -> np.ndarray:
    wav = tmp / "out.wav"
    if engine == "piper":
        chunks = list(piper.synthesize(text, None, float(voice)))
        return resample(np.concatenate([c.audio for c in chunks]), chunks[0].sample_rate)
    if engine == "espeak-ng":
        return _run_to_audio(["espeak-ng", "-v", voice, "-s", str(random.randint(140, 190)), "-w", str(wav), text], wav)
    if engine == "festival":
        return _run_to_audio(["text2wave", "-eval", f"({voice})", "-o", str(wav)], wav, stdin=text)
    if engine == "flite":
        return _run_to_audio(["flite", "-voice", voice, "-t", text, "-o", str(wav)], wav)
    raise ValueError(engine)


def fake_clips() -> list[dict]:
    from speechcore.backends.piper_tts import PiperTTS
    from speechcore.spec import BackendSpec

    piper = PiperTTS(BackendSpec(backend="piper", model="piper-joe"))
    engines = [("piper", v) for v in ("0.9", "1.0", "1.15")] + [("espeak-ng", v) for v in ESPEAK_VOICES] \
        + [("festival", v) for v in FESTIVAL_VOICES] + [("flite", v) for v in FLITE_VOICES]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine, voice in engines:
            for i, text in enumerate(SENTENCES):
                audio = synthesize(engine, voice, text, Path(tmp), piper)
                held_out = engine == "flite" or i >= TRAIN_SENTENCES
                out.append({"audio": audio, "label": 0, "split": "test" if held_out else "train",
                            "group": f"{engine}:{voice}", "engine": engine})
    return out


def real_clips() -> list[dict]:
    out = []
    for lang, paths in klettres_files().items():
        out += [{"path": p, "split": "test" if lang in HELD_OUT_LANGS else "train", "group": f"klettres:{lang}"}
                for p in paths]
    for voice, paths in asterisk_files().items():
        out += [{"path": p, "split": "test" if voice == HELD_OUT_ASTERISK else "train",
                 "group": f"asterisk:{voice}"} for p in paths]
    fixtures = get_settings().fixtures_dir
    out += [{"path": p, "split": "test", "group": f"fixture:{p.parent.name}"}
            for p in sorted(fixtures.glob("*/*.wav")) if p.stem != "Noise"]
    for clip in out:
        clip.update(audio=decode_file(clip["path"]), label=1, engine="human")
    return out


def windows(audio: np.ndarray, seconds: float = WINDOW_S) -> list[np.ndarray]:
    n = int(seconds * 16000)
    if len(audio) <= n * 1.5:
        return [audio]
    return [audio[i:i + n] for i in range(0, len(audio) - n // 3, n)]


def augment(audio: np.ndarray, rng: random.Random) -> np.ndarray:
    """Same recording-chain variation for both classes: gain, a lossy codec round trip, noise."""
    audio = audio * rng.uniform(0.3, 1.0) / (np.abs(audio).max() + 1e-6)
    fmt = rng.choice(["mp3", "ogg", "aac", None])
    if fmt:
        audio = decode_audio(encode_audio(audio.astype(np.float32), 16000, fmt)[0])
    if rng.random() < 0.5:
        snr_db = rng.uniform(15, 40)
        noise = np.random.default_rng(rng.randint(0, 2**31)).normal(size=len(audio)).astype(np.float32)
        audio = audio + noise * np.sqrt(np.mean(audio ** 2) / 10 ** (snr_db / 10))
    return audio.astype(np.float32)


def featurize(clips: list[dict], rng: random.Random, augmented_copies: int) -> list[dict]:
    rows = []
    for clip in clips:
        for w in windows(clip["audio"]):
            versions = [w] + [augment(w, rng) for _ in range(augmented_copies)]
            rows += [{**{k: v for k, v in clip.items() if k not in ("audio", "path")},
                      "x": spoof_features(v)} for v in versions]
    return rows


def train_mlp(x: np.ndarray, y: np.ndarray, epochs: int = 60):
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    mean, std = x.mean(0), x.std(0) + 1e-4
    model = nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 32), nn.ReLU(),
                          nn.Linear(32, 1))
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y.astype(np.float32))
    pos_weight = torch.tensor([(y == 0).sum() / max(1, (y == 1).sum())], dtype=torch.float32)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 128):
            b = perm[i:i + 128]
            opt.zero_grad()
            loss_fn(model(xt[b]).squeeze(1), yt[b]).backward()
            opt.step()
    model.eval()
    return Standardised(model, mean, std)


def Standardised(model, mean: np.ndarray, std: np.ndarray):
    """The MLP with feature standardisation and the sigmoid inside, so the ONNX file is self-contained."""
    import torch
    from torch import nn

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
            self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))

        def forward(self, features):
            return torch.sigmoid(self.model((features - self.mean) / self.std)).squeeze(1)

    return Wrapped().eval()


def predict(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def evaluate(rows: list[dict], scores: np.ndarray) -> dict:
    real = [s for r, s in zip(rows, scores) if r["label"] == 1]
    report = {}
    for name, keep in (("seen engines, held-out sentences", lambda r: r["engine"] != "flite"),
                       ("held-out engine: flite", lambda r: r["engine"] == "flite"),
                       ("all fake", lambda r: True)):
        fake = [s for r, s in zip(rows, scores) if r["label"] == 0 and keep(r)]
        eer, thr = equal_error_rate(real, fake)
        report[name] = {"eer": round(eer, 4), "threshold_at_eer": round(thr, 4), "real": len(real),
                        "fake": len(fake)}
    for engine in sorted({r["engine"] for r in rows if r["label"] == 0}):
        fake = [s for r, s in zip(rows, scores) if r["engine"] == engine]
        report[f"engine {engine}"] = {"eer": round(equal_error_rate(real, fake)[0], 4), "fake": len(fake)}
    return report


def mode_thresholds(rows: list[dict], scores: np.ndarray) -> dict:
    """From the held-out curve of the seen engines (score is P(real); real when score >= threshold):
    top security accepts at most 0.1 % of fakes, flex sits at the EER, consumer rejects at most
    0.5 % of real speech; kept in that order (top >= flex >= consumer)."""
    real = np.array([s for r, s in zip(rows, scores) if r["label"] == 1])
    fake = [s for r, s in zip(rows, scores) if r["label"] == 0]
    flex = equal_error_rate(real.tolist(), fake)[1]
    return {"bank_top_security": max(threshold_at_far(fake, 0.001), flex), "bank_flex": flex,
            "consumer": min(float(np.quantile(real, 0.005)), flex)}


def operating_points(rows: list[dict], scores: np.ndarray, thresholds: dict) -> dict:
    """Per mode: real speech rejected, and fakes accepted (seen engines / held-out engine)."""
    real = scores[[r["label"] == 1 for r in rows]]
    seen = scores[[r["label"] == 0 and r["engine"] != "flite" for r in rows]]
    unseen = scores[[r["engine"] == "flite" for r in rows]]
    return {mode: {"real_rejected": round(float(np.mean(real < t)), 4),
                   "fake_accepted_seen": round(float(np.mean(seen >= t)), 4),
                   "fake_accepted_flite": round(float(np.mean(unseen >= t)), 4)}
            for mode, t in thresholds.items()}


def export(model, path: Path) -> None:
    import torch

    torch.onnx.export(model, (torch.zeros(1, DIM),), str(path), dynamo=False, input_names=["features"],
                      output_names=["p_real"], dynamic_axes={"features": {0: "n"}, "p_real": {0: "n"}},
                      opset_version=17)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--augmented-copies", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="pickle of the featurised windows (reused when present)")
    args = ap.parse_args()
    rng = random.Random(SEED)
    random.seed(SEED)
    if args.cache and args.cache.exists():
        rows = pickle.loads(args.cache.read_bytes())
    else:
        rows = featurize(real_clips() + fake_clips(), rng, args.augmented_copies)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(rows))
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    model = train_mlp(np.stack([r["x"] for r in train]), np.array([r["label"] for r in train]))
    scores = predict(model, np.stack([r["x"] for r in test]))
    report = evaluate(test, scores)
    thresholds = mode_thresholds([r for r in test if r["engine"] != "flite"],
                                 scores[[r["engine"] != "flite" for r in test]])
    points = operating_points(test, scores, thresholds)
    args.out.mkdir(parents=True, exist_ok=True)
    export(model, args.out / "anti_spoof.onnx")
    card = {"features": NAME, "input": "features", "output": "p_real", "thresholds": thresholds,
            "operating_points": points,
            "held_out": report, "train_windows": {"real": sum(r["label"] for r in train),
                                                  "fake": sum(1 - r["label"] for r in train)},
            "protocol": __doc__.split("Protocol")[1].strip()}
    (args.out / "anti_spoof.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"{'held-out set':40s} {'EER':>7s} {'real':>6s} {'fake':>6s}")
    for name, r in report.items():
        print(f"{name:40s} {r['eer']:7.2%} {r.get('real', ''):>6} {r['fake']:>6}")
    print(f"\n{'mode':20s} {'threshold':>9s} {'real rejected':>14s} {'fake accepted (seen)':>21s} "
          f"{'fake accepted (flite)':>22s}")
    for mode, t in thresholds.items():
        p = points[mode]
        print(f"{mode:20s} {t:9.4f} {p['real_rejected']:14.2%} {p['fake_accepted_seen']:21.2%} "
              f"{p['fake_accepted_flite']:22.2%}")


if __name__ == "__main__":
    main()
