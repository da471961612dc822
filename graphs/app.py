"""Application builder: `import_path: graphs.app:build_app`, `args:` = a GraphSpec.

The CPU and GPU profiles are this one graph with different args and
deployment options (configs/serve_cpu.yaml, serve_config.yaml). Which
deployment class serves each role comes from the role table
(speechcore.roles). Validating the spec checks every backend's options, so a
misspelt option fails here, before any replica starts.
"""
from __future__ import annotations

from typing import Any, cast

from ray.serve import Application
from ray.serve.deployment import Deployment

from graphs.ingress import Ingress
from speechcore.roles import ROLES, import_target
from speechcore.spec import BackendSpec, GraphSpec

BACKEND_FIELDS = set(BackendSpec.model_fields)   # what a model deployment gets (not the ASR deployment name)


def deployment_class(role: str) -> Deployment:
    cls = import_target(ROLES[role].deployment)
    assert isinstance(cls, Deployment), ROLES[role].deployment
    return cls


def build_app(args: dict[str, Any]) -> Application:
    spec = GraphSpec(**args)
    handles = {name: deployment_class(role).options(name=name).bind(s.model_dump(include=BACKEND_FIELDS))
               for name, (role, s) in spec.model_deployments().items()}
    return cast(Deployment, Ingress).options(name="ingress").bind(spec.model_dump(), handles)
