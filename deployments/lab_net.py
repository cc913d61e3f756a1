"""The lab's machinery (``make lab``, docs/lab.md): simulated hosts on one machine, each a network
namespace with its own Docker engine, joined to this machine by a bridge.

Why these pieces: a host of the lab must be as separate from the platform as another machine is,
or the lab proves nothing about hosts that are. Each one gets

- a network namespace (``ip netns add``), entered with ``nsenter --net`` (``ip netns exec`` also
  remounts /sys, which hides the cgroup hierarchy dockerd needs);
- a veth pair to a lab bridge with private addresses and no route anywhere else: the only thing a
  host can reach is the bridge's own address, where the Prefect API answers (deployments/lab_relay.py);
- its own dockerd (socket, data root, exec root, pidfile, cgroup parent in the lab's state folder),
  started inside the namespace without bridge, iptables or masquerading; host-network containers
  of that engine are therefore in the host's namespace, as its worker is. The platform in the root
  namespace talks to that engine through its Unix socket only: nothing here ever addresses a
  namespace's IP from the root namespace.

Everything is named from the lab's ``tag`` so that two labs (``make lab`` and a test) never meet,
and :func:`teardown` removes it all again (:func:`leftovers` says what would remain).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

SYSTEM_CONTAINERD = Path("/run/containerd/containerd.sock")
CGROUP_ROOT = Path("/sys/fs/cgroup")
STATE_FILE = "lab.json"


class LabSpec(BaseModel):
    """One lab: its names, addresses and folders (saved as <state_dir>/lab.json for ``make lab-cut``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tag: str = Field(pattern=r"^[a-z][a-z0-9]{1,7}$", description="Prefix of every namespace, link and cgroup of this lab.")
    hosts: int = Field(2, ge=1, le=32)
    subnet: int = Field(0, ge=0, le=255, description="The lab's addresses are 10.211.<subnet>.0/24.")
    state_dir: Path
    local_data: tuple[str, ...] = Field((), description="Hosts that cannot see the data root (data: local): a private folder over it.")
    data_root: Path | None = Field(None, description="The platform's data root, hidden on the local_data hosts.")

    @property
    def names(self) -> list[str]:
        return [f"lab-{i}" for i in range(1, self.hosts + 1)]

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def bridge_ip(self) -> str:
        """The root namespace's address on the bridge: the hosts reach the platform here."""
        return f"10.211.{self.subnet}.1"

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"the lab has hosts {', '.join(self.names)}, not {name!r}")
        return self.names.index(name) + 1

    def netns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def veth_root(self, name: str) -> str:
        return f"{self.tag}{self.index(name)}r"

    def veth_host(self, name: str) -> str:
        return f"{self.tag}{self.index(name)}h"

    def host_ip(self, name: str) -> str:
        return f"10.211.{self.subnet}.{10 + self.index(name)}"

    def host_dir(self, name: str) -> Path:
        return self.state_dir / name

    def socket(self, name: str) -> Path:
        return self.host_dir(name) / "docker.sock"

    def docker_url(self, name: str) -> str:
        return f"unix://{self.socket(name)}"

    def enter(self, name: str) -> list[str]:
        """The prefix that runs a command inside the host's namespace."""
        return ["nsenter", f"--net=/run/netns/{self.netns(name)}"]

    def private_data(self, name: str) -> Path:
        """A local_data host's own folder, seen at the data root's path by its engine, containers and worker."""
        return self.host_dir(name) / "own-data"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / STATE_FILE).write_text(self.model_dump_json(indent=1))

    @classmethod
    def load(cls, state_dir: Path) -> "LabSpec":
        path = state_dir / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"no lab runs with its state in {state_dir} (no {STATE_FILE}): start one with `make lab`")
        return cls.model_validate_json(path.read_text())


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def free_subnet(preferred: int) -> int:
    """A third octet of 10.211.x.0/24 that no address of this machine uses yet."""
    used = _ip("-4", "-o", "addr", check=False).stdout
    for x in [preferred, *range(1, 255)]:
        if f" 10.211.{x}." not in used:
            return x
    raise RuntimeError("every 10.211.x.0/24 is in use on this machine")


def create_network(spec: LabSpec) -> None:
    """The bridge (with the root side's address), one namespace and veth pair per host."""
    if SYSTEM_CONTAINERD.exists():
        raise RuntimeError(f"{SYSTEM_CONTAINERD} exists: a lab engine would use that shared containerd, whose containers run outside "
                           "the lab host's namespace; stop the system containerd or run the lab on a machine without one")
    _ip("link", "add", spec.bridge, "type", "bridge")
    _ip("addr", "add", f"{spec.bridge_ip}/24", "dev", spec.bridge)
    _ip("link", "set", spec.bridge, "up")
    for name in spec.names:
        ns, root, inner = spec.netns(name), spec.veth_root(name), spec.veth_host(name)
        _ip("netns", "add", ns)
        _ip("link", "add", root, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", root, "master", spec.bridge, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{spec.host_ip(name)}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")  # no default route: the subnet is all a host can reach


def set_link(spec: LabSpec, name: str, up: bool) -> None:
    """``make lab-cut`` / ``make lab-heal``: the host's cable, pulled or plugged back (root side of its veth)."""
    _ip("link", "set", spec.veth_root(name), "up" if up else "down")


def dockerd_command(spec: LabSpec, name: str) -> list[str]:
    """The host's engine, inside its namespace; every path its own, nothing shared with the default engine."""
    d = spec.host_dir(name)
    hide: list[str] = []
    if name in spec.local_data:  # its own mount namespace, the private folder over the data root: it cannot see the shared one
        if spec.data_root is None:
            raise ValueError("a lab with local_data hosts needs data_root (the path their private folder covers)")
        hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mkdir -p "$1" "$2" && mount --bind "$1" "$2" && shift 2 && exec "$@"',
                "sh", str(spec.private_data(name)), str(spec.data_root)]
    return [*spec.enter(name), *hide, "dockerd", "--host", spec.docker_url(name), "--data-root", str(d / "data"),
            "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"), "--cgroup-parent", f"/{spec.netns(name)}",
            "--bridge=none", "--iptables=false", "--ip-masq=false"]


def start_engines(spec: LabSpec, timeout: float = 60) -> dict[str, subprocess.Popen]:
    """Every host's dockerd, in its own session (Ctrl-C reaches only ``make lab``), answering on its socket."""
    procs: dict[str, subprocess.Popen] = {}
    for name in spec.names:
        folder = spec.host_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "dockerd.log", "ab") as log:
            procs[name] = subprocess.Popen(dockerd_command(spec, name), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
    deadline = time.monotonic() + timeout
    for name, proc in procs.items():
        while subprocess.run(["docker", "-H", spec.docker_url(name), "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (spec.host_dir(name) / "dockerd.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"the engine of {name} did not answer on {spec.socket(name)}:\n{tail}")
            time.sleep(0.3)
    return procs


def stop_engines(procs: dict[str, subprocess.Popen], timeout: float = 40) -> None:
    """SIGTERM to each dockerd alone (not its group: its containerd must outlive it while it stops its containers)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def copy_images(spec: LabSpec, images: list[str]) -> dict[str, float]:
    """``docker save`` from the default engine piped into each lab engine's ``docker load``, all hosts at
    once; returns the seconds each host took. Nothing is pulled: an image missing here is an error."""
    missing = [i for i in images if subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode != 0]
    if missing:
        raise RuntimeError(f"not on the default engine, so not copied to the lab: {', '.join(missing)} (make image builds the runtime image)")
    took: dict[str, float] = {}
    errors: list[str] = []

    def load(name: str) -> None:
        started = time.monotonic()
        out = subprocess.run(["bash", "-o", "pipefail", "-c", 'docker save "${@:2}" | docker -H "$1" load -q', "load",
                              spec.docker_url(name), *images], capture_output=True, text=True)
        took[name] = time.monotonic() - started
        if out.returncode != 0:
            errors.append(f"{name}: {out.stderr.strip()[-500:]}")

    threads = [threading.Thread(target=load, args=(n,)) for n in spec.names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("copying images to the lab failed: " + "; ".join(errors))
    return took


def _lab_pids(spec: LabSpec) -> list[int]:
    """Processes that belong to the lab: inside one of its namespaces, or naming its state folder."""
    pids: set[int] = set()
    for name in spec.names:
        out = _ip("netns", "pids", spec.netns(name), check=False)
        pids.update(int(p) for p in out.stdout.split() if p.isdigit())
    for cgroup in _cgroups(spec):  # containers of a lab engine on a network of their own
        for procs in cgroup.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
    marker = str(spec.state_dir).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    pids.add(int(proc.name))
            except OSError:
                continue
    pids.discard(os.getpid())
    return sorted(pids)


def _mounts(spec: LabSpec) -> list[str]:
    prefix = str(spec.state_dir)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def host_cgroups(spec: LabSpec, name: str) -> list[Path]:
    """The cgroup folders of one lab host's engine (its ``--cgroup-parent``): its containers, live and past."""
    return [d for d in CGROUP_ROOT.glob(f"*/{spec.netns(name)}") if d.is_dir()]


def _cgroups(spec: LabSpec) -> list[Path]:
    return [d for name in spec.names for d in host_cgroups(spec, name)]


def _links(spec: LabSpec) -> list[str]:
    present = _ip("-o", "link", check=False).stdout
    wanted = [spec.bridge, *(spec.veth_root(n) for n in spec.names)]
    return [link for link in wanted if f": {link}:" in present or f": {link}@" in present]


def _namespaces(spec: LabSpec) -> list[str]:
    listed = {line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.strip()}
    return [spec.netns(n) for n in spec.names if spec.netns(n) in listed]


def leftovers(spec: LabSpec) -> list[str]:
    """What of the lab still exists (empty after a clean teardown)."""
    return ([f"namespace {n}" for n in _namespaces(spec)] + [f"link {link}" for link in _links(spec)]
            + [f"process {p}" for p in _lab_pids(spec)] + [f"mount {m}" for m in _mounts(spec)]
            + [f"cgroup {c}" for c in _cgroups(spec)] + ([f"folder {spec.state_dir}"] if spec.state_dir.exists() else []))


def _stop_processes(spec: LabSpec) -> None:
    """SIGTERM to what is left (dockerd stops its containers), then SIGKILL after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        pids = _lab_pids(spec)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists()]
            time.sleep(0.2)


def _remove_cgroups(spec: LabSpec) -> None:
    for top in _cgroups(spec):
        for folder, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):  # deepest first
            try:
                os.rmdir(folder)
            except OSError:
                pass


def teardown(spec: LabSpec) -> list[str]:
    """Remove the whole lab, in the order things depend on each other; returns what could not be removed."""
    import shutil

    engines = []
    for name in spec.names:  # each engine first, alone: it stops its own containers
        try:
            engines.append(int((spec.host_dir(name) / "docker.pid").read_text()))
            os.kill(engines[-1], signal.SIGTERM)
        except (OSError, ValueError):
            continue
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() for p in engines) and time.monotonic() < deadline:
        time.sleep(0.2)
    _stop_processes(spec)
    for point in sorted(_mounts(spec), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    _remove_cgroups(spec)
    for link in _links(spec):
        _ip("link", "del", link, check=False)
    for ns in _namespaces(spec):
        _ip("netns", "del", ns, check=False)
    if not _mounts(spec):  # never delete under a mount point (an engine's data root)
        shutil.rmtree(spec.state_dir, ignore_errors=True)
    return leftovers(spec)


def describe(spec: LabSpec) -> str:
    return json.dumps({n: {"netns": spec.netns(n), "veth": spec.veth_root(n), "engine": spec.docker_url(n)} for n in spec.names})
