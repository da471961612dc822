"""The application graph spec: the `args:` of a Serve config (CPU or GPU profile).

Both profiles are this one schema; `serve_config.yaml` (GPU) and
`configs/serve_cpu.yaml` (CPU) differ only in values. Its roles come from the
role table (`speechcore.roles`): `asr` maps public model names to deployments,
every other role is one top-level key. Validating a spec checks each backend's
options against that backend's options model, so a misspelt option in a
profile fails when the app is built, naming the option and the backend.
"""
from __future__ import annotations

from typing import Any

from pydantic import (BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError,
                      model_serializer, model_validator)

from speechcore.roles import ROLES, SINGLE_ROLES, import_target


class BackendOptions(BaseModel):
    """Base of every backend's options model: unknown keys are errors, not silently ignored."""
    model_config = ConfigDict(extra="forbid")


class EmbedderOptions(BackendOptions):
    """Options every speaker-embedding backend takes: its calibrated scores (speechcore.speakers.scoring)."""
    cosine_threshold: float = 0.75
    as_norm_threshold: float = 2.4
    min_cohort: int = 10
    as_norm_top_n: int = 200
    diarization_threshold: float = 0.3
    """Average-linkage cosine distance at which diarization stops merging clusters (per model:
    tuned on fixtures by bench/diarization.py)."""


class BackendSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str
    model: str
    """A registry name (configs/models.yaml), a local path, or a hub id."""
    device: str = "cpu"
    options: dict[str, Any] = Field(default_factory=dict)
    """Validated against the backend's `Options` model (see `options_model`)."""


class ASRSpec(BackendSpec):
    deployment: str
    """Serve deployment name for this model (resources are configured under it)."""


def options_model(role: str, backend: str) -> type[BackendOptions]:
    """The options model of a backend; ValueError for a backend the role table does not know."""
    target = ROLES[role].backends.get(backend)
    if target is None:
        raise ValueError(f"no {role} backend named {backend!r}; choose one of {sorted(ROLES[role].backends)}")
    model = getattr(import_target(target), "Options")
    assert isinstance(model, type) and issubclass(model, BackendOptions), target
    return model


def parse_options(role: str, spec: BackendSpec) -> Any:
    """The spec's options as the backend's typed model; ValueError naming each bad option and the backend."""
    try:
        return options_model(role, spec.backend).model_validate(spec.options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: "
                             f"{'unknown option' if e['type'] == 'extra_forbidden' else e['msg']}"
                             for e in exc.errors())
        raise ValueError(f"{role} backend {spec.backend!r} (model {spec.model!r}) options: {problems}") from None


class GraphSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    asr: dict[str, ASRSpec]
    """Public model name -> ASR deployment; requests choose with `model`."""
    default_asr: str
    live_asr: dict[str, str] = Field(default_factory=dict)
    """Language -> public ASR model name for live sessions that name no model (e.g. `en: moonshine-base`)."""
    roles: dict[str, BackendSpec]
    """Every other role of the role table -> its spec (top-level keys in a profile: `vad:`, `tts:`, ...)."""

    @model_validator(mode="before")
    @classmethod
    def _gather_roles(cls, data: Any) -> Any:
        if isinstance(data, dict) and "roles" not in data:
            data = dict(data)
            data["roles"] = {r: data.pop(r) for r in SINGLE_ROLES if r in data}
        return data

    @model_validator(mode="after")
    def _check(self) -> GraphSpec:
        missing = [r for r in SINGLE_ROLES if r not in self.roles]
        unknown = [r for r in self.roles if r not in SINGLE_ROLES]
        if missing or unknown:
            raise ValueError(f"roles missing: {missing}, unknown: {unknown}; the roles are {SINGLE_ROLES}")
        if self.default_asr not in self.asr:
            raise ValueError(f"default_asr {self.default_asr!r} is not one of asr: {sorted(self.asr)}")
        if unknown_live := sorted(set(self.live_asr.values()) - set(self.asr)):
            raise ValueError(f"live_asr names {unknown_live}, not among asr: {sorted(self.asr)}")
        for role, spec in self.model_deployments().values():
            parse_options(role, spec)
        return self

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        out.update(out.pop("roles"))
        return out

    def role(self, name: str) -> BackendSpec:
        """The spec of a single-deployment role (`vad`, `tts`, ...)."""
        return self.roles[name]

    def model_deployments(self) -> dict[str, tuple[str, BackendSpec]]:
        """Deployment name -> (role, spec) for every model deployment in the graph."""
        out: dict[str, tuple[str, BackendSpec]] = {a.deployment: ("asr", a) for a in self.asr.values()}
        out.update({name: (name, spec) for name, spec in self.roles.items()})
        return out
