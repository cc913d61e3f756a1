"""A real single-node Slurm on this machine, for the tests and bench/slurm.py.

Debian's ``slurm-wlm`` and ``munge`` (22.05): as root, a private munge key and socket, a
minimal ``slurm.conf`` (this machine's hostname as the one node, ``CPUS`` slots, the
partitions a Deucalion-like host names, state under a temporary folder, free ports), then
``slurmctld -D`` and ``slurmd -D`` as background processes of this one. Nothing is
installed as a service and nothing outside the temporary folder is written: clients find
this cluster through ``SLURM_CONF`` (:meth:`SlurmCluster.env`). :meth:`stop` ends the three
daemons it started (by pid) and leaves no job behind.

``start(second_node=True)`` adds ``node2`` (1 CPU), alone in the non-default partition ``lossy``,
its slurmd in a network namespace reached only through relays (deployments/slurm_netns_node.py):
:meth:`cut_node2` / :meth:`heal_node2` pull and plug back its link, for the node-loss drill.
The default partition (this machine's node, 2 slots) is the same with or without it.

    with SlurmCluster.start() as cluster:     # raises SlurmUnavailable when it cannot
        subprocess.run(["sbatch", ...], env=cluster.env())
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deployments.platform import free_port
from deployments.slurm_netns_node import NetnsNode

NETNS_BINARIES = ("ip", "nsenter", "socat", "ss")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
CPUS = 2
# name -> MaxTime: the partitions a test host may allow or be refused (upstream's names)
PARTITIONS = {"normal-x86": "01:00:00", "dev-x86": "00:10:00"}
READY_SECONDS = 60


class SlurmUnavailable(RuntimeError):
    """Slurm or munge is not installed, or this process is not root."""


def missing(second_node: bool = False) -> str | None:
    """Why a cluster cannot start here, or None."""
    wanted = BINARIES + (NETNS_BINARIES if second_node else ())
    absent = [b for b in wanted if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install -y slurm-wlm munge{' socat iproute2 util-linux' if second_node else ''})"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 8 // 10
    return 1024


@dataclass
class SlurmCluster:
    root: Path
    node: str = field(default_factory=socket.gethostname)
    ctld_port: int = field(default_factory=free_port)
    slurmd_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    node2: NetnsNode | None = None

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def nodes(self) -> list[str]:
        return [self.node, *([self.node2.name] if self.node2 else [])]

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    def env(self) -> dict[str, str]:
        """What a Slurm client (sbatch, squeue, the platform's worker) needs to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    @classmethod
    def start(cls, root: Path | None = None, second_node: bool = False) -> "SlurmCluster":
        why = missing(second_node)
        if why:
            raise SlurmUnavailable(why)
        cluster = cls(Path(root or tempfile.mkdtemp(prefix="opeva-slurm-")))
        if second_node:
            cluster.node2 = NetnsNode(cluster.root, cluster.ctld_port, free_port())
        try:
            cluster._start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> "SlurmCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_conf(self) -> None:
        r = self.root
        r.chmod(0o755)  # jobs run as an unprivileged uid: slurmstepd execs their script from the spool
        for sub in ("munge", "state", "spool", "log", *(f"spool/{n}" for n in self.nodes)):
            (r / sub).mkdir(parents=True, exist_ok=True)
            (r / sub).chmod(0o700 if sub == "munge" else 0o755)
        partitions = "\n".join(
            f"PartitionName={name} Nodes={self.node} MaxTime={limit} State=UP Default={'YES' if i == 0 else 'NO'}"
            for i, (name, limit) in enumerate(PARTITIONS.items())
        )
        self.conf.write_text(f"""# written by deployments/slurm_cluster.py
ClusterName=opeva-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={_memory_mb()} State=UNKNOWN
{partitions}
{self.node2.conf_lines() if self.node2 else ""}""")

    def _start(self) -> None:
        self.write_conf()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = self.root / "munge"
        munge.chmod(0o700)
        self._spawn(["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
                     f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/seed"], "munged")
        self._wait(lambda: self.munge_socket.exists(), "munged's socket")
        env = {**os.environ, **self.env()}
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld", env)
        self._spawn(["slurmd", "-D", "-f", str(self.conf)], "slurmd", env)
        self._wait(self.idle, f"node {self.node} idle in sinfo")
        if self.node2:
            self.node2.create()
            self.node2.heal()
            self.node2.start_slurmd(self.conf, env)
            self._wait(lambda: self.idle(self.node2.name), f"node {self.node2.name} idle in sinfo")

    def _spawn(self, cmd: list[str], name: str, env: dict[str, str] | None = None) -> None:
        out = open(self.root / "log" / f"{name}.out", "ab")
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        out.close()

    def _wait(self, ready, what: str, seconds: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            dead += [f"{self.node2.name}'s slurmd"] if self.node2 and self.node2.dead() else []
            if dead:
                raise SlurmUnavailable(f"{', '.join(dead)} exited while waiting for {what}; logs in {self.root}/log")
            if ready():
                return
            time.sleep(0.3)
        raise SlurmUnavailable(f"timed out waiting for {what}; logs in {self.root}/log")

    def idle(self, node: str | None = None) -> bool:
        """``node`` (this machine's by default) is idle in sinfo."""
        return self.node_state(node or self.node) == "idle"

    def node_state(self, node: str) -> str:
        """sinfo's short state of ``node`` (idle, alloc, down*, ...), or "" when sinfo does not answer."""
        out = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%t"], capture_output=True, text=True, env={**os.environ, **self.env()})
        words = out.stdout.split() if out.returncode == 0 else []
        return words[0] if words else ""

    def cut_node2(self) -> None:
        """node2's link pulled: controller and node no longer reach each other (its slurmd and jobs run on)."""
        assert self.node2, "the cluster was started without second_node"
        self.node2.cut()

    def heal_node2(self) -> None:
        """node2's link back; ReturnToService=2 puts it back in service once its slurmd registers."""
        assert self.node2, "the cluster was started without second_node"
        self.node2.heal()
        # it registers at its slurmd's next retry or the controller's next ping: seconds, bounded generously for a loaded machine
        self._wait(lambda: self.idle(self.node2.name), f"node {self.node2.name} idle again", 2 * READY_SECONDS)

    def lose_node(self) -> None:
        """The node as Slurm sees a lost one: its slurmd stops answering (SIGSTOP); its jobs' own
        processes go on, as on a node cut off from the controller."""
        self._slurmd().send_signal(signal.SIGSTOP)

    def restore_node(self) -> None:
        """slurmd answers again; ReturnToService=2 puts the node back in service once it registers."""
        self._slurmd().send_signal(signal.SIGCONT)
        self._wait(self.idle, f"node {self.node} idle again")

    def _slurmd(self) -> subprocess.Popen:
        return next(p for p in self.procs if p.args[0] == "slurmd")

    def stop(self) -> None:
        """Cancel what is left in the queue, then end the daemons this object started."""
        if self.procs and all(p.poll() is None for p in self.procs):
            subprocess.run(["scancel", "--full", "--quiet", "-u", "root"], env={**os.environ, **self.env()}, capture_output=True, timeout=30)
        if self.node2:
            self.node2.stop()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a stopped slurmd (lose_node) could not act on SIGTERM
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


SIMULATOR_PACKAGES = ("numpy", "pandas", "pyyaml", "pydantic", "httpx")
VENV_CACHE = Path(os.environ.get("OPEVA_CACHE", "/var/cache/opeva")) / "slurm-simulator-venv"


def simulator_venv(path: Path = VENV_CACHE) -> str:
    """A Python the compute node's unprivileged job can run for runtime ``none``: a venv of
    Debian's python3 (the platform's own interpreter may sit in a private home) with the
    reference simulator's packages, from the runtime image's wheelhouse when there is one.
    Cached; returns the interpreter's path."""
    python = path / "bin" / "python"
    if (path / ".complete").exists():
        return str(python)
    base = shutil.which("python3", path="/usr/bin:/bin") or "python3"
    subprocess.run([base, "-m", "venv", "--clear", str(path)], check=True, capture_output=True)
    wheels = sorted(path.parent.glob("wheels-*"), key=lambda p: p.stat().st_mtime)
    source = ["--no-index", "--find-links", str(wheels[-1])] if wheels else []
    out = subprocess.run([str(python), "-m", "pip", "install", "-q", *source, *SIMULATOR_PACKAGES], capture_output=True, text=True)
    if out.returncode != 0 and source:  # the wheelhouse lacks one: the index
        out = subprocess.run([str(python), "-m", "pip", "install", "-q", *SIMULATOR_PACKAGES], capture_output=True, text=True)
    if out.returncode != 0:
        raise SlurmUnavailable(f"could not make the simulator's venv: {out.stderr[-1000:]}")
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    (path / ".complete").touch()
    return str(python)


if __name__ == "__main__":  # a cluster by hand: python -m deployments.slurm_cluster
    with SlurmCluster.start() as c:
        print(f"export SLURM_CONF={c.conf}   # Ctrl-C stops the cluster")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
