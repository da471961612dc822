"""Model backends behind one small Protocol per role (see protocols.py).

`load_backend(role, spec)` picks the implementation the role table
(`speechcore.roles`) names for `spec.backend`; each implementation imports its
heavy library lazily, so the GPU-only ones (NeMo, SpeechBrain, Coqui, vLLM)
cost nothing on the CPU profile.
"""
from __future__ import annotations

from typing import Any

from speechcore.roles import ROLES, import_target
from speechcore.spec import BackendSpec, options_model


def backend_names(role: str) -> list[str]:
    return list(ROLES[role].backends)


def load_backend(role: str, spec: BackendSpec) -> Any:
    """An instance of the role's backend named by the spec (its options already checked)."""
    options_model(role, spec.backend)   # ValueError naming the choices for an unknown backend
    cls = import_target(ROLES[role].backends[spec.backend])
    assert callable(cls)
    try:
        return cls(spec)
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"The {spec.backend} {role} backend needs the Python package {exc.name!r}, which is "
                           f"not installed: pip install -r requirements-gpu.txt (GPU profile)") from exc
