"""Shared bench helpers: start the app privately, print tables, measure process-tree RSS."""
from __future__ import annotations

import os
import socket
import statistics
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = [f"\n### {title}\n", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int(next(line for line in (p / "status").read_text().splitlines()
                                if line.startswith("PPid:")).split()[1])
            except (OSError, StopIteration):
                continue
            tree.setdefault(ppid, []).append(int(p.name))
    return tree


def process_tree_rss(root: int | None = None) -> list[tuple[str, float]]:
    """(process name, RSS MiB) for `root` and all its descendants."""
    return [(name, rss) for name, rss, _ in process_tree_memory(root)]


def process_tree_memory(root: int | None = None) -> list[tuple[str, float, float]]:
    """(process name, RSS MiB, PSS MiB) for `root` and all its descendants.

    RSS counts a shared page (libraries, memory-mapped weights) once per process
    that maps it, so their sum overstates the total; PSS splits each shared page
    between its processes, so the PSS sum is what the tree really holds."""
    tree, out, stack = _children(), [], [root or os.getpid()]
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        try:
            rss = _kib(Path(f"/proc/{pid}/status"), "VmRSS:") / 1024
            pss = _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss:") / 1024
            name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, StopIteration):
            continue
        out.append((name.split(" ")[0].removeprefix("ray::")[:60], rss, pss))
    return out


def _kib(path: Path, key: str) -> int:
    return next(int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith(key))


def available_mib() -> float:
    """The machine's MemAvailable: a start's drop in it is what the start took from the machine."""
    return _kib(Path("/proc/meminfo"), "MemAvailable:") / 1024
