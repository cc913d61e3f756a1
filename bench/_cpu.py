"""CPU seconds per part of the platform, read from /proc and cgroup v2, for benches that must say
where a CPU-bound machine's time went (bench/slurm.py, bench/lab.py)."""

from __future__ import annotations

import os
from pathlib import Path


def proc_cpu(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its reaped children's), from /proc/<pid>/stat; (0, 0) when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


MACHINE = "machine (all processes)"


def machine_cpu() -> float:
    """Every process's CPU seconds since boot (user + nice + system of /proc/stat)."""
    user, nice, system = (int(x) for x in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def cgroup_cpu(folder: Path) -> float:
    """A cgroup's CPU seconds, its descendants included (also those already removed: cgroup v2 keeps
    their usage in the parent), from cpu.stat's usage_usec; 0 when it is not there."""
    try:
        for line in (folder / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    except OSError:
        pass
    return 0.0


def live_children_cpu(pid: int) -> float:
    """What the process's living children used, with their own reaped children (a process worker's
    fork server and the flow runs it forked: deployments/forkserver.py)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            total += sum(proc_cpu(int(entry.name)))
    return total


def services_cpu(platform) -> dict[str, float]:
    """Each platform service's own CPU seconds, its reaped children's (a worker's children are the
    flow runs' processes it started) and its living children's (a process worker's fork server)."""
    out: dict[str, float] = {}
    for service in platform.services:
        own, children = proc_cpu(service.proc.pid)
        out[service.name] = own
        out[f"{service.name} (reaped children)"] = children
        out[f"{service.name} (living children)"] = live_children_cpu(service.proc.pid)
    return out


def print_split(title: str, before: dict[str, float], after: dict[str, float]) -> None:
    """A table of what each part used between two readings, largest first, parts that used < 0.05 s left out."""
    used = {k: v - before.get(k, 0.0) for k, v in after.items()}
    if MACHINE in used:
        used["rest (not listed: kernel, containerd, the bench itself, ...)"] = used[MACHINE] - sum(v for k, v in used.items() if k != MACHINE)
    print(f"\n{title}\n| part | CPU s |\n|---|---|")
    for key, value in sorted(used.items(), key=lambda kv: -kv[1]):
        if value >= 0.05:
            print(f"| {key} | {value:.1f} |")
