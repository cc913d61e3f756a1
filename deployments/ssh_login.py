"""A Slurm login node reached over ssh, on this machine, for the tests of ``submit: ssh://...``.

Why a network namespace: the platform's ssh client must cross a real network hop to a real sshd
(Debian's openssh-server), as it would to Deucalion's login node, without opening a port on this
machine's own network. So, as root:

- a namespace ``opeva-ssh-<pid>`` (``ip netns add``) with its loopback up and one veth pair to the
  root namespace (a /30 of 10.231.0.0/16 not in use here);
- ``sshd -D -e`` inside it on the namespace's 127.0.0.1:22, with its own config in a temporary
  folder: a generated host key, one authorised key made here, no PAM, no password, ``AllowUsers
  root``, and ``SetEnv SLURM_CONF=...`` so the commands it runs find the test cluster;
- a forwarder (socat) inside it on 127.0.0.1:<slurmctld port> that connects out through the veth
  to slurmctld in the root namespace (munge is a unix socket on the shared file system);
- the platform reaches sshd with ``ProxyCommand nsenter --net=/run/netns/<name> nc 127.0.0.1 22``:
  the TCP client runs inside the namespace; nothing in the root namespace addresses it.

:meth:`LoginNode.stop` kills every process left in the namespace (sshd, its sessions, the
forwarder, the proxies), then deletes the namespace and the veth: nothing stays behind.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deployments import netns

BINARIES = ("ip", "nsenter", "socat", "nc", "ssh", "ssh-keygen", "rsync")
SSHD = "/usr/sbin/sshd"
HOST_ALIAS = "opeva-login"  # the name in the submit URL and known_hosts (never resolved: the ProxyCommand connects)
# + "-<pid>": ssh's shared connections (ControlPath %C) are keyed by user@host:port, not by ProxyCommand
READY_SECONDS = 30


class LoginNodeUnavailable(RuntimeError):
    """openssh-server, rsync, socat or netcat is missing, or this process is not root."""


def missing() -> str | None:
    absent = [b for b in BINARIES if shutil.which(b) is None] + ([] if Path(SSHD).exists() else ["sshd"])
    if absent:
        return f"not installed: {', '.join(absent)} (apt-get install -y openssh-server rsync socat netcat-openbsd)"
    if os.geteuid() != 0:
        return "a network namespace needs root"
    return None


def _sh(*args: str) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise LoginNodeUnavailable(f"{' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_interface(w).network for line in _sh("ip", "-o", "-4", "addr").splitlines()
            for w in line.split() if "/" in w and w[0].isdigit()]
    for i in range(os.getpid() % 4096, os.getpid() % 4096 + 4096):
        net = ipaddress.ip_network(f"10.231.{(i // 64) % 256}.{(i % 64) * 4}/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise LoginNodeUnavailable("no free /30 in 10.231.0.0/16")


@dataclass
class LoginNode:
    ctld_port: int
    slurm_conf: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="opeva-ssh-")))
    name: str = field(default_factory=lambda: f"opeva-ssh-{os.getpid()}")
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def veth(self) -> str:
        return f"os{os.getpid() % 100000}h"

    @property
    def remote_root(self) -> Path:
        """The job folders' root on the "login node" (a folder apart from the platform's data root)."""
        return self.root / "remote"

    def ssh_block(self, **extra) -> dict:
        """The host's ``slurm.ssh`` block (core/slurm_transport.SshOptions)."""
        return {"remote_root": str(self.remote_root), "identity_file": str(self.root / "id_ed25519"),
                "known_hosts_file": str(self.root / "known_hosts"), "strict_host_key_checking": "yes",
                "proxy_command": f"nsenter --net={self.netns} nc 127.0.0.1 22", **extra}

    @property
    def alias(self) -> str:
        return f"{HOST_ALIAS}-{os.getpid()}"

    @property
    def destination(self) -> str:
        """``user@host`` as the platform's messages name the login node."""
        return f"root@{self.alias}"

    @property
    def submit(self) -> str:
        return f"ssh://{self.destination}"

    @classmethod
    def start(cls, ctld_port: int, slurm_conf: str) -> "LoginNode":
        why = missing()
        if why:
            raise LoginNodeUnavailable(why)
        node = cls(ctld_port, slurm_conf)
        try:
            node._start()
        except BaseException:
            node.stop()
            raise
        return node

    def _start(self) -> None:
        r = self.root
        for d in (r, self.remote_root):
            d.mkdir(exist_ok=True)
            d.chmod(0o755)  # jobs run as uid 65534 below remote_root
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(r / "host_ed25519"))
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(r / "id_ed25519"))
        (r / "authorized_keys").write_text((r / "id_ed25519.pub").read_text())
        key_type, key = (r / "host_ed25519.pub").read_text().split()[:2]
        (r / "known_hosts").write_text(f"{self.alias} {key_type} {key}\n")
        (r / "sshd_config").write_text(f"""# written by deployments/ssh_login.py
Port 22
ListenAddress 127.0.0.1
HostKey {r}/host_ed25519
PidFile {r}/sshd.pid
AuthorizedKeysFile {r}/authorized_keys
PermitRootLogin prohibit-password
AllowUsers root
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
SetEnv SLURM_CONF={self.slurm_conf}
""")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        net = _free_subnet()
        outside, inside = [str(h) for h in net.hosts()]
        netns.add(self.name, LoginNodeUnavailable)
        ns = netns.enter(self.name)
        _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "ns0", "netns", self.name)
        _sh("ip", "addr", "add", f"{outside}/30", "dev", self.veth)
        _sh("ip", "link", "set", self.veth, "up")
        _sh(*ns, "ip", "addr", "add", f"{inside}/30", "dev", "ns0")
        _sh(*ns, "ip", "link", "set", "ns0", "up")
        self._spawn([*ns, SSHD, "-D", "-e", "-f", str(r / "sshd_config")], "sshd")
        self._spawn([*ns, "socat", f"TCP-LISTEN:{self.ctld_port},bind=127.0.0.1,reuseaddr,fork",
                     f"TCP:{outside}:{self.ctld_port}"], "socat")
        self._wait_ready()

    def _spawn(self, cmd: list[str], name: str) -> None:
        out = open(self.root / f"{name}.log", "ab")
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        out.close()

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        """A command on the login node, as the platform's transport runs it."""
        from core.slurm_transport import SshOptions, Transport

        via = Transport.of(self.submit, SshOptions(**self.ssh_block()))
        return subprocess.run([*via.ssh_options(), via.destination(), command], capture_output=True, text=True, timeout=30)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        last = ""
        while time.monotonic() < deadline:
            dead = [p.args[2] for p in self.procs if p.poll() is not None]
            if dead:
                raise LoginNodeUnavailable(f"{', '.join(dead)} exited; logs in {self.root}")
            out = self.ssh("sinfo -h -o %P")
            if out.returncode == 0 and out.stdout.strip():
                return
            last = out.stderr.strip()
            time.sleep(0.3)
        raise LoginNodeUnavailable(f"the login node did not answer sinfo over ssh: {last}; logs in {self.root}")

    def stop(self) -> None:
        """Every process in the namespace ends (this node's only), then the namespace and the veth go."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for pid in netns.pids(self.name) if Path(self.netns).exists() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        netns.remove(self.name)
        shutil.rmtree(self.root, ignore_errors=True)
