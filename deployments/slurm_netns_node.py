"""A second Slurm compute node in its own network namespace, for the node-loss test (issue 23).

Why a namespace: a node "lost" by SIGSTOP of the only slurmd takes the whole cluster out with it,
and says nothing about a node whose *link* goes. Here node2's slurmd runs inside a namespace
``opeva-slurm-<pid>`` (deployments/netns.py: ``ip netns add``, entered with ``nsenter --net``)
whose only way to the controller, and the controller's only way to it, is four socat relays over
Unix socket files in the cluster's folder (the file system is shared; so is munge's socket):

    slurmctld -> 127.0.0.1:<node2 port> (root ns) -> node2-slurmd.sock -> 127.0.0.1:<node2 port> (netns, slurmd)
    slurmd/slurmstepd -> 127.0.0.1:<ctld port> (netns) -> node2-ctld.sock -> 127.0.0.1:<ctld port> (root ns, slurmctld)

Nothing in the root namespace ever addresses the namespace's IP (there is no veth: nothing links
the namespace to any network). :meth:`cut` ends the four relays (their process groups,
so connections in flight die too): the node is unreachable both ways while its slurmd and its
jobs' processes run on, as on a node whose cable was pulled. :meth:`heal` starts them again.
:meth:`stop` kills every process left in the namespace, then deletes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from deployments import netns

NAME = "node2"
PARTITION = "lossy"  # node2 alone, never the default: other tests' jobs never land on it
CPUS = 1
MEMORY_MB = 1024


@dataclass
class NetnsNode:
    root: Path  # the cluster's folder
    ctld_port: int
    port: int  # node2's slurmd port, the same number on both sides of its relay
    netns: str = field(default_factory=lambda: f"opeva-slurm-{os.getpid()}")
    name: str = NAME
    slurmd: subprocess.Popen | None = None
    relays: list[subprocess.Popen] = field(default_factory=list)

    @property
    def enter(self) -> list[str]:
        return netns.enter(self.netns)

    def conf_lines(self) -> str:
        """The node and its partition, for slurm.conf (NodeAddr/Port: the root side of its relay)."""
        return (f"NodeName={self.name} NodeHostname={self.name} NodeAddr=127.0.0.1 Port={self.port} CPUs={CPUS} "
                f"RealMemory={MEMORY_MB} State=UNKNOWN\n"
                f"PartitionName={PARTITION} Nodes={self.name} MaxTime=01:00:00 State=UP Default=NO\n")

    def _sock(self, what: str) -> Path:
        return self.root / f"{self.name}-{what}.sock"

    def create(self) -> None:
        """The namespace: its loopback up, with a second address besides 127.0.0.1. slurmd needs that
        one: it resolves its listen address with AI_ADDRCONFIG, which glibc answers with nothing on a
        host whose only IPv4 address is 127.0.0.1 ("Unable to bind listen port")."""
        netns.add(self.netns)
        _run(*self.enter, "ip", "addr", "add", "192.0.2.1/32", "dev", "lo")  # TEST-NET-1, on loopback: reachable from nowhere

    def heal(self) -> None:
        """The link (the four relays) up; each listener is ready when this returns."""
        if self.relays:
            return
        slurmd_sock, ctld_sock = self._sock("slurmd"), self._sock("ctld")
        self._relay([*self.enter, "socat", f"UNIX-LISTEN:{slurmd_sock},fork,unlink-early,mode=600", f"TCP:127.0.0.1:{self.port}"])
        self._relay(["socat", f"UNIX-LISTEN:{ctld_sock},fork,unlink-early,mode=600", f"TCP:127.0.0.1:{self.ctld_port}"])
        _wait(lambda: slurmd_sock.exists() and ctld_sock.exists(), self._dead_relay, "the relays' socket files")
        self._relay(["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork", f"UNIX-CONNECT:{slurmd_sock}"])
        self._relay([*self.enter, "socat", f"TCP-LISTEN:{self.ctld_port},bind=127.0.0.1,reuseaddr,fork", f"UNIX-CONNECT:{ctld_sock}"])
        _wait(lambda: _listening(self.port) and _listening(self.ctld_port, self.enter), self._dead_relay, "the relays' ports")

    def cut(self) -> None:
        """The link down both ways: every relay process (and each connection's forked child) ends."""
        for proc in self.relays:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.relays.clear()

    def start_slurmd(self, conf: Path, env: dict[str, str]) -> None:
        out = open(self.root / "log" / f"slurmd-{self.name}.out", "ab")
        self.slurmd = subprocess.Popen([*self.enter, "slurmd", "-D", "-N", self.name, "-f", str(conf)], stdout=out,
                                       stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()

    def _relay(self, cmd: list[str]) -> None:
        with open(self.root / "log" / f"relays-{self.name}.out", "ab") as out:
            self.relays.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))

    def _dead_relay(self) -> str | None:
        dead = [" ".join(p.args[-2:]) for p in self.relays if p.poll() is not None]
        return f"relay {dead[0]} exited; log in {self.root}/log" if dead else None

    def dead(self) -> bool:
        return self.slurmd is not None and self.slurmd.poll() is not None

    def stop(self) -> None:
        """slurmd (TERM, then KILL), the relays, every other process in the namespace; then the namespace."""
        if self.slurmd is not None and self.slurmd.poll() is None:
            self.slurmd.send_signal(signal.SIGTERM)
            try:
                self.slurmd.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.slurmd.kill()
                self.slurmd.wait()
        self.cut()
        netns.remove(self.netns)  # and a job's slurmstepd and processes, left running by a cut node
        for what in ("slurmd", "ctld"):
            self._sock(what).unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What of this node still exists (empty after :meth:`stop`)."""
        left = [f"namespace {self.netns}"] if netns.path(self.netns).exists() else []
        left += [f"process {p.pid} ({p.args[0]})" for p in [*self.relays, *([self.slurmd] if self.slurmd else [])] if p.poll() is None]
        return left


def _run(*args: str) -> None:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")


def _listening(port: int, enter: list[str] | None = None) -> bool:
    out = subprocess.run([*(enter or []), "ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True)
    return "127.0.0.1" in out.stdout


def _wait(ready, dead, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        why = dead()
        if why:
            raise RuntimeError(why)
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")
