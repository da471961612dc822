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
from bench.common import available_mib, process_tree_memory
before = available_mib()
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
time.sleep(5)   # replicas settle (imports done, idle workers started)
memory = process_tree_memory()
taken = before - available_mib()
first_use = []
if sys.argv[1] == "cpu":   # a model the profile loads on first use: the first request waits for it
    import httpx
    from tests.speech import librivox
    clip = next(iter(librivox())).read_bytes()
    for _ in range(2):
        t = time.time()
        r = httpx.post(f"http://127.0.0.1:{port}/voice/anti-spoof", files={"files": ("a.flac", clip)}, timeout=300)
        first_use.append(time.time() - t if r.status_code == 200 else -1.0)
print("RESULT " + json.dumps({"ready_s": total, "memory": memory, "taken": taken, "first_use": first_use}))
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
    rss = lambda r: sum(x[1] for x in r["memory"])  # noqa: E731
    pss = lambda r: sum(x[2] for x in r["memory"])  # noqa: E731
    row = lambda name, r: [name, round(r["ready_s"], 1), len(r["memory"]), round(rss(r)), round(pss(r)),  # noqa: E731
                           round(r["taken"]), round(r["ready_s"] / bare["ready_s"], 2), round(pss(r) / pss(bare), 2)]
    table("Cold start to ready (CPU profile vs bare Serve app, same run)",
          ["app", "ready (s)", "processes", "sum of RSS (MiB)", "total PSS (MiB)", "MemAvailable drop (MiB)",
           "time ratio", "PSS ratio"],
          [row("bare Serve app (1 trivial deployment)", bare), row("CPU profile (model deployments + ingress)", cpu)])
    groups: dict[str, list[float]] = {}
    for name, r, p in cpu["memory"]:
        key = name if name.startswith(("ServeReplica", "ServeController", "ProxyActor")) else \
            ("ray core (gcs, raylet, agents, idle workers)" if "python" not in name or "ray" in name else "driver")
        groups[key] = [a + b for a, b in zip(groups.get(key, [0.0, 0.0]), (r, p))]
    table("A model loaded on first use (POST /voice/anti-spoof, one LibriVox clip)",
          ["request", "seconds", "ratio"],
          [["first (loads anti_spoof)", round(cpu["first_use"][0], 2), round(cpu["first_use"][0] / cpu["first_use"][1], 1)],
           ["second (loaded)", round(cpu["first_use"][1], 2), 1.0]])
    table("Memory by process, CPU profile", ["process", "RSS (MiB)", "PSS (MiB)"],
          [[k, round(v[0]), round(v[1])] for k, v in sorted(groups.items(), key=lambda kv: -kv[1][1])])


if __name__ == "__main__":
    main()
