"""Start a Serve config on a private Ray instance: what `serve run <config>` does, plus a chosen HTTP port,
the dashboard only when `SPEECH_DASHBOARD` is on, and a fixed metrics port when `SPEECH_METRICS_PORT` is set.
Used by the tests and benchmarks, and by `make run` (`python -m graphs.launch CONFIG`)."""
from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import yaml

from speechcore.settings import REPO_ROOT, get_settings


def load_config(path: str | Path, port: int | None = None, **app_overrides) -> dict:
    config = yaml.safe_load((REPO_ROOT / path).read_text())
    if port is not None:
        config.setdefault("http_options", {})["port"] = port
    for app in config["applications"]:
        app.update(app_overrides)
    return config


def start(config: dict, num_cpus: int | None = None) -> None:
    """Deploy `config` (a Serve config dict) on a new local Ray instance owned by this process."""
    import ray
    from ray.serve._private import api
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    settings = get_settings()
    ray.init(address="local", namespace="serve", include_dashboard=settings.dashboard, num_cpus=num_cpus,
             logging_level="WARNING", configure_logging=True, _metrics_export_port=settings.metrics_port)
    client = api.serve_start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location,
                             grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
                             global_logging_config=schema.logging_config)
    client.deploy_apps(schema, _blocking=False)


def deploy(config: dict) -> None:
    """Replace the running applications with those in `config` (declarative, like `serve deploy`)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)


def wait_ready(base_url: str, timeout_s: float = 300, path: str = "/readyz") -> float:
    """Seconds until `path` answers 200; raises TimeoutError with the last answer."""
    start_t = time.time()
    last = ""
    while time.time() - start_t < timeout_s:
        try:
            with urllib.request.urlopen(base_url + path, timeout=5) as r:
                if r.status == 200:
                    return time.time() - start_t
        except Exception as exc:  # not up yet
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{base_url}{path} not ready after {timeout_s:.0f} s: {last}")


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def main() -> None:
    """Serve CONFIG (default: the CPU profile) until interrupted."""
    import signal
    import sys

    config = load_config(sys.argv[1] if len(sys.argv) > 1 else "configs/serve_cpu.yaml")
    port = config.get("http_options", {}).get("port", 8000)
    start(config)
    print(f"deploying; ready when http://127.0.0.1:{port}/readyz answers 200 (Ctrl-C stops)", flush=True)
    stopped = False

    def halt(*_: object) -> None:
        nonlocal stopped
        stopped = True
    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)
    try:
        while not stopped:
            time.sleep(0.5)
    finally:
        stop()


if __name__ == "__main__":
    main()
