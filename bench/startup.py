"""Cold start of the CPU profile to ready, and the RSS of all its processes.

Baseline in the same run: a bare Serve app (one trivial deployment) on the
same machine, so the ratio says what our models and graph add.
Run: `make bench-startup` (or .venv/bin/python bench/startup.py). Each start
runs in a fresh subprocess (fresh Ray instance).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, table  # noqa: E402

CHILD = r'''
import json, sys, time
t0 = time.time()
from graphs import launch
from bench.common import process_tree_rss
port = int(sys.argv[2])
if sys.argv[1] == "bare":
    config = {"http_options": {"port": port}, "applications": [
        {"name": "bare", "route_prefix": "/", "import_path": "bench.bare_app:app"}]}
    path = "/"
else:
    config = launch.load_config("configs/serve_cpu.yaml", port=port)
    path = "/readyz"
launch.start(config)
ready = launch.wait_ready(f"http://127.0.0.1:{port}", 600, path)
total = time.time() - t0
rss = process_tree_rss()
print("RESULT " + json.dumps({"ready_s": total, "rss": rss}))
launch.stop()
'''


def run(kind: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(free_port())], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=900)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{kind} start failed:\n{out.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    bare, cpu = run("bare"), run("cpu")
    mib = lambda r: sum(x for _, x in r["rss"])  # noqa: E731
    table("Cold start to ready (CPU profile vs bare Serve app, same run)",
          ["app", "ready (s)", "processes", "total RSS (MiB)", "time ratio", "RSS ratio"],
          [["bare Serve app (1 trivial deployment)", round(bare["ready_s"], 1), len(bare["rss"]), round(mib(bare)),
            1.0, 1.0],
           ["CPU profile (6 model deployments + ingress)", round(cpu["ready_s"], 1), len(cpu["rss"]), round(mib(cpu)),
            round(cpu["ready_s"] / bare["ready_s"], 2), round(mib(cpu) / mib(bare), 2)]])
    groups: dict[str, float] = {}
    for name, rss in cpu["rss"]:
        key = name if name.startswith(("ServeReplica", "ServeController", "ProxyActor")) else \
            ("ray core (gcs, raylet, agents, idle workers)" if "python" not in name or "ray" in name else "driver")
        groups[key] = groups.get(key, 0) + rss
    table("RSS by process, CPU profile", ["process", "RSS (MiB)"],
          [[k, round(v)] for k, v in sorted(groups.items(), key=lambda kv: -kv[1])])


if __name__ == "__main__":
    main()
