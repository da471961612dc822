"""Both profiles validate against Ray Serve's own schema and describe the same graph."""
from __future__ import annotations

import copy

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from speechcore.registry import load_registry
from speechcore.settings import REPO_ROOT
from speechcore.spec import GraphSpec

PROFILES = {"gpu": REPO_ROOT / "serve_config.yaml", "cpu": REPO_ROOT / "configs" / "serve_cpu.yaml"}


def app_of(profile: str) -> dict:
    config = yaml.safe_load(PROFILES[profile].read_text())
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    return app


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_is_a_valid_serve_config_of_the_graph(profile):
    app = app_of(profile)
    assert app["import_path"] == "graphs.app:build_app"
    spec = GraphSpec(**app["args"])
    configured = {d["name"] for d in app["deployments"]}
    assert set(spec.model_deployments()) | {"ingress"} == configured
    assert spec.default_asr in spec.asr
    registry = load_registry()
    for role, backend in spec.model_deployments().values():
        assert backend.model in registry, f"{backend.model} is not in configs/models.yaml"
        assert registry[backend.model].role == role


def test_gpu_profile_every_model_takes_a_gpu_fraction_and_autoscales():
    app = app_of("gpu")
    models = set(GraphSpec(**app["args"]).model_deployments())
    for d in app["deployments"]:
        if d["name"] not in models:
            continue
        gpus = d["ray_actor_options"]["num_gpus"]
        assert 0 < gpus < 1, f"{d['name']} must declare a fractional GPU, has {gpus}"
        auto = d["autoscaling_config"]
        assert auto["max_replicas"] > auto["min_replicas"] >= 0, d["name"]
    assert sum(d["ray_actor_options"].get("num_gpus", 0) for d in app["deployments"]) <= 1.5


def test_cpu_profile_asks_for_no_gpu_and_uses_only_bundled_models():
    app = app_of("cpu")
    assert all(not d.get("ray_actor_options", {}).get("num_gpus") for d in app["deployments"])
    registry = load_registry()
    for _, backend in GraphSpec(**app["args"]).model_deployments().values():
        source = registry[backend.model].source
        in_repo = source.kind == "path" and (REPO_ROOT / source.path).is_file()  # small models trained here
        assert source.kind == "pypi" or in_repo, backend.model
        assert backend.device == "cpu"


def test_gpu_profile_deployment_backends_exist():
    from speechcore.backends import backend_names

    for role, backend in GraphSpec(**app_of("gpu")["args"]).model_deployments().values():
        assert backend.backend in backend_names(role)


@pytest.mark.parametrize("profile", PROFILES)
def test_user_configs_are_valid_batch_configs_of_their_deployments(profile):
    from graphs.app import deployment_class

    app = app_of(profile)
    roles = {name: role for name, (role, _) in GraphSpec(**app["args"]).model_deployments().items()}
    configured = [d for d in app["deployments"] if "user_config" in d]
    assert {roles[d["name"]] for d in configured} == {"asr", "vad", "speaker_embedding"}
    for d in configured:
        config_model = deployment_class(roles[d["name"]]).func_or_class.Config
        config_model.model_validate(d["user_config"])   # extra="forbid": a misspelt knob fails here


def test_a_misspelt_backend_option_fails_building_the_app_naming_it_and_the_backend():
    from graphs.app import build_app

    args = copy.deepcopy(app_of("cpu")["args"])
    args["tts"]["options"] = {"espeak_langauges": ["fr"]}
    with pytest.raises(ValueError, match=r"tts backend 'piper'.*espeak_langauges: unknown option"):
        build_app(args)
    args = copy.deepcopy(app_of("cpu")["args"])
    args["asr"]["whisper-base"]["options"]["cpu_thread"] = 2
    with pytest.raises(ValueError, match=r"asr backend 'faster-whisper' \(model 'whisper-base'\).*cpu_thread"):
        GraphSpec(**args)
    args = copy.deepcopy(app_of("cpu")["args"])
    args["llm"]["options"]["n_ctx"] = "lots"
    with pytest.raises(ValueError, match=r"llm backend 'llama-cpp'.*n_ctx"):
        GraphSpec(**args)


def test_roles_come_from_the_role_table():
    from speechcore.roles import ROLES

    args = copy.deepcopy(app_of("cpu")["args"])
    spec = GraphSpec(**args)
    assert {role for role, _ in spec.model_deployments().values()} == set(ROLES)
    assert GraphSpec(**spec.model_dump()) == spec and set(spec.model_dump()) == set(args)
    with pytest.raises(ValueError, match="roles missing: \\['tts'\\]"):
        GraphSpec(**{k: v for k, v in args.items() if k != "tts"})
    with pytest.raises(ValueError, match="tss"):
        GraphSpec(**args, tss=args["tts"])
    with pytest.raises(ValueError, match="no vad backend named 'silero'"):
        GraphSpec(**{**args, "vad": {**args["vad"], "backend": "silero"}})
