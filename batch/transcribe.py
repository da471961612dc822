"""Batch transcription with Ray Data: `python -m batch.transcribe INPUT OUTPUT.parquet`.

decode (CPU tasks) -> VAD (CPU actors) [-> diarization (actors with the
profile's speaker-embedding share)] -> ASR (actors with the profile's GPU
share, or CPUs) as `map_batches` stages, built from the same profile the
server runs (`--config`, default the CPU profile) and the same Ray-free
pipeline code. Rows stream back to this driver, which appends them to the
Parquet dataset OUTPUT in parts (resumable: paths already there are skipped)
and prints progress. Without RAY_ADDRESS it starts a private local Ray
instance; under `ray job submit` (RAY_ADDRESS set) it runs on that cluster.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from batch.files import PartWriter, done_paths, list_inputs, to_row
from speechcore.settings import REPO_ROOT
from speechcore.spec import GraphSpec


@dataclass
class Plan:
    """What the stages run with, read from a Serve profile."""
    vad: dict[str, Any]
    asr: dict[str, Any]
    asr_resources: dict[str, float]
    embedding: dict[str, Any]
    embedding_resources: dict[str, float]


def load_plan(config: Path, model: str | None) -> Plan:
    """The VAD, ASR and speaker-embedding backends of the profile's app, and their deployments' accelerator
    shares."""
    profile = yaml.safe_load(config.read_text())
    app = profile["applications"][0]
    spec = GraphSpec.model_validate(app["args"])
    name = model or spec.default_asr
    if name not in spec.asr:
        raise SystemExit(f"unknown model {name!r}; the profile has: {', '.join(sorted(spec.asr))}")
    asr = spec.asr[name]
    vad = {**spec.role("vad").model_dump(), "device": "cpu"}   # a CPU stage, apart from the GPU one
    return Plan(vad=vad, asr=asr.model_dump(exclude={"deployment"}), asr_resources=_resources(app, asr.deployment),
                embedding=spec.role("speaker_embedding").model_dump(),
                embedding_resources=_resources(app, "speaker_embedding"))


def _resources(app: dict[str, Any], deployment: str) -> dict[str, float]:
    """A stage's actor resources: the deployment's GPU share (with its CPUs) where it has one, else 1 CPU."""
    options = next((d.get("ray_actor_options", {}) for d in app.get("deployments", [])
                    if d.get("name") == deployment), {})
    gpus = float(options.get("num_gpus", 0) or 0)
    return {"num_gpus": gpus, "num_cpus": float(options.get("num_cpus", 1) or 0)} if gpus else {"num_cpus": 1.0}


def build_dataset(paths: list[str], plan: Plan, options: dict[str, Any], args: argparse.Namespace) -> Any:
    """decode as stateless CPU tasks (their own resource share, so Ray Data does not fuse them into the
    VAD actors), VAD and ASR as actor pools that load their model once."""
    import ray.data

    from batch import stages

    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=max(1, min(len(paths), 200)))
    ds = ds.map_batches(stages.decode, batch_size=1, num_cpus=args.decode_cpus)
    ds = ds.map_batches(stages.VAD, fn_constructor_args=(plan.vad,), batch_size=args.batch_size,
                        num_cpus=args.vad_cpus, compute=ray.data.ActorPoolStrategy(size=args.vad_actors))
    if args.diarize:
        ds = ds.map_batches(stages.Diarize, fn_constructor_args=(plan.embedding,), batch_size=args.batch_size,
                            compute=ray.data.ActorPoolStrategy(size=args.diarize_actors),
                            **plan.embedding_resources)
    return ds.map_batches(stages.ASR, fn_constructor_args=(plan.asr, options), batch_size=args.batch_size,
                          compute=ray.data.ActorPoolStrategy(size=args.asr_actors), **plan.asr_resources)


def init_ray() -> None:
    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level="WARNING")   # a cluster (`ray job submit` sets RAY_ADDRESS)
    else:   # a private instance: never attach to another user's local Ray by accident
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")


def run(args: argparse.Namespace) -> dict[str, float]:
    """Transcribe what is not yet in OUTPUT; returns counts for the summary line."""
    output = Path(args.output)
    plan = load_plan(Path(args.config), args.model)
    inputs = list_inputs(args.input)
    done = done_paths(output)
    todo = [p for p in inputs if p not in done]
    _say(args, f"{len(inputs)} inputs, {len(inputs) - len(todo)} already in {output}, {len(todo)} to do")
    stats = {"files": 0.0, "errors": 0.0, "audio_s": 0.0, "wall_s": 0.0}
    if not todo:
        return stats
    init_ray()
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if args.quiet:   # Ray Data warns that the bars are off: the user asked for that
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = not args.quiet
    options = {"language": args.language, "beam_size": args.beam_size}
    writer, started = PartWriter(output), time.monotonic()
    for row in _rows(build_dataset(todo, plan, options, args)):
        writer.add(to_row(row))
        stats["files"] += 1
        stats["errors"] += bool(row["error"])
        stats["audio_s"] += float(row["duration"])
        if stats["files"] % 10 == 0 or stats["files"] == len(todo):
            _progress(args, stats, len(todo), time.monotonic() - started)
    writer.flush()
    stats["wall_s"] = time.monotonic() - started
    return stats


def _rows(ds: Any) -> Iterator[dict[str, Any]]:
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["path"])):
            yield {k: v[i] for k, v in batch.items()}


def _progress(args: argparse.Namespace, s: dict[str, float], total: int, wall: float) -> None:
    _say(args, f"{int(s['files'])}/{total} files, {int(s['errors'])} errors, {s['audio_s'] / 3600:.3f} h audio, "
               f"{s['audio_s'] / max(wall, 1e-9):.1f} audio-s/s")


def _say(args: argparse.Namespace, line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m batch.transcribe", description=__doc__.split("\n")[0])
    p.add_argument("input", help="a folder, a glob (quote it) or a text file of paths/URIs")
    p.add_argument("output", help="Parquet dataset directory, e.g. out.parquet (resumable)")
    p.add_argument("--config", default=str(REPO_ROOT / "configs" / "serve_cpu.yaml"),
                   help="Serve profile the models and resources come from (serve_config.yaml: GPU)")
    p.add_argument("--model", help="ASR model name from the profile (default: its default_asr)")
    p.add_argument("--language", help="language hint (default: detected per file)")
    p.add_argument("--diarize", action="store_true",
                   help="label each segment with its speaker (SPEAKER_00, ...) and list them in `speakers`")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8, help="files per VAD/ASR batch")
    p.add_argument("--asr-actors", type=int, default=1, help="ASR actors (one per GPU on a cluster)")
    p.add_argument("--vad-actors", type=int, default=1)
    p.add_argument("--diarize-actors", type=int, default=1, help="speaker-embedding actors (with --diarize)")
    p.add_argument("--decode-cpus", type=float, default=0.25)
    p.add_argument("--vad-cpus", type=float, default=0.5)
    p.add_argument("--quiet", action="store_true", help="no Ray Data progress bars")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stats = run(args)
    print(f"done: {int(stats['files'])} files ({int(stats['errors'])} errors), {stats['audio_s'] / 3600:.3f} h "
          f"of audio in {stats['wall_s']:.1f} s -> {args.output}", flush=True)


if __name__ == "__main__":
    main()
