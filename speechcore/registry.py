"""The model registry (configs/models.yaml): what each model is and where it comes from."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from speechcore.settings import REPO_ROOT, get_settings

REGISTRY_FILE = REPO_ROOT / "configs" / "models.yaml"


class Source(BaseModel):
    kind: Literal["pypi", "path", "hub"]
    packages: list[str] = Field(default_factory=list)
    files: dict[str, list[str]] = Field(default_factory=dict)
    path: str | None = None
    id: str | None = None
    convert: str | None = None
    """A script (repo-relative) that `make models` runs on models/<name>/ after extracting: turns shipped
    files into the served format once (e.g. ORT -> ONNX), and checks the result."""


class ModelEntry(BaseModel):
    role: str
    description: str = ""
    languages: list[str] | Literal["multilingual"] = "multilingual"
    source: Source


@lru_cache
def load_registry(path: Path = REGISTRY_FILE) -> dict[str, ModelEntry]:
    raw = yaml.safe_load(Path(path).read_text())["models"]
    return {name: ModelEntry(**entry) for name, entry in raw.items()}


def resolve(model: str, models_dir: Path | None = None) -> str:
    """Where a backend should load `model` from: a registry name, a path, or a hub id.

    Registry models from packages live in models/<name>; `path` sources are used
    as they are; `hub` sources return the hub id for the backend library to fetch.
    Anything not in the registry is passed through (a path or an id).
    """
    models_dir = Path(models_dir or get_settings().models_dir)
    entry = load_registry().get(model)
    if entry is None:
        return model
    if entry.source.kind == "pypi":
        return str(models_dir / model)
    if entry.source.kind == "path":
        path = Path(entry.source.path or model)
        return str(path if path.is_absolute() else REPO_ROOT / path)
    return entry.source.id or model


def model_file(model: str, name: str) -> str:
    """The file a backend loads: `model` itself when it names that kind of file, else `name` inside its folder."""
    path = resolve(model)
    return path if path.endswith(Path(name).suffix) else f"{path}/{name}"


def size_bytes(path: str) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return 0
