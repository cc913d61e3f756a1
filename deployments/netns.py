"""Network namespaces of the test machinery: made, entered and removed the same way everywhere.

Used by the Slurm login node over ssh (deployments/ssh_login.py) and the Slurm test cluster's
second node (deployments/slurm_netns_node.py). Entered with ``nsenter --net`` only: ``ip netns
exec`` also remounts /sys, which hides the cgroup hierarchy the daemons inside may need (as
deployments/lab_net.py explains for dockerd).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def path(name: str) -> Path:
    return Path(f"/run/netns/{name}")


def enter(name: str) -> list[str]:
    """The prefix that runs a command inside the namespace."""
    return ["nsenter", f"--net={path(name)}"]


def add(name: str, error: type[Exception] = RuntimeError) -> None:
    """The namespace, its loopback up (nothing else: callers add links or addresses)."""
    for cmd in (["ip", "netns", "add", name], [*enter(name), "ip", "link", "set", "lo", "up"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise error(f"{' '.join(cmd)}: {out.stderr.strip()}")


def pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def remove(name: str, seconds: float = 5) -> None:
    """SIGKILL to every process still inside (until none is left, or ``seconds``), then the namespace."""
    if not path(name).exists():
        return
    deadline = time.monotonic() + seconds
    while (left := pids(name)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
