"""Cluster deployment (deploy/): the RayService manifest is current with serve_config.yaml, valid against the
RayService schema, and its embedded Serve config passes Ray Serve's own schema and the graph spec."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from deploy.build_manifest import build
from speechcore.settings import REPO_ROOT
from speechcore.spec import GraphSpec

DEPLOY = REPO_ROOT / "deploy"


def _manifest() -> dict:
    return yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())


def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(yaml.safe_load((DEPLOY / "rayservice.schema.yaml").read_text()))


def test_manifest_is_generated_from_serve_config_and_current():
    assert (DEPLOY / "rayservice.yaml").read_text() == build(), "stale: run `make manifest`"
    assert _manifest()["spec"]["serveConfigV2"] == (REPO_ROOT / "serve_config.yaml").read_text()


def test_manifest_matches_the_rayservice_schema():
    errors = [e.message for e in _validator().iter_errors(_manifest())]
    assert errors == []


@pytest.mark.parametrize("path, value", [(("spec", "serveConfig"), "x"),                       # misspelt field
                                         (("spec", "upgradeStrategy", "type"), "Rolling"),      # not an enum value
                                         (("spec", "rayClusterConfig", "headGroupSpec", "rayStartParams",
                                           "num-gpus"), 0)])                                    # must be a string
def test_schema_refuses_what_the_crd_refuses(path, value):
    manifest = copy.deepcopy(_manifest())
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(_validator().iter_errors(manifest))


def test_embedded_serve_config_passes_serve_schema_and_asks_for_gpus():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(_manifest()["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    app = config["applications"][0]
    GraphSpec.model_validate(app["args"])
    gpus = sum(d.get("ray_actor_options", {}).get("num_gpus", 0) for d in app["deployments"])
    worker = _manifest()["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    per_node = int(worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert schema.applications[0].import_path == "graphs.app:build_app"
    assert 0 < gpus <= per_node * worker["maxReplicas"]    # the models fit on the cluster at its largest


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfiles_install_through_the_makefile(name):
    text = (DEPLOY / name).read_text()
    steps = [step.strip() for run in re.findall(r"^RUN (.*)$", text, flags=re.M) for step in run.split("&&")]
    targets = [t for step in steps if step.startswith("make ") for t in step.split()[1:]]
    assert targets and not [s for s in steps if "pip install" in s]   # one install path: the Makefile's targets
    defined = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))
    assert set(targets) <= defined
    assert Path(REPO_ROOT / ".dockerignore").exists()
