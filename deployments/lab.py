"""``make lab HOSTS=N``: the platform as ``make up`` runs it, plus N simulated hosts ``lab-1`` … ``lab-N``
on this machine (docs/lab.md); ``make lab-cut HOST=lab-2`` / ``make lab-heal HOST=lab-2`` pull and
plug back one host's link.

Why: a platform of many hosts has to be tried (by users, by the tests, by the benches) without many
machines. Each lab host is built from the same parts as a real one (deployments/lab_net.py: its own
namespace and Docker engine) and joins the same way a real one does, through ``make host``'s code
(deployments/join_host.py) run inside its namespace, told only the Prefect API's address on the lab
bridge and its credentials. The platform itself reaches each lab engine at its Unix socket, the
``docker_url`` of the host's entry in the lab's hosts file. The API and the Prefect UI stay on this
machine's loopback ports, so every client works unchanged.

The tests start the same pieces through :class:`Lab` (tests/e2e/test_lab.py).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from deployments.lab_net import LabSpec, copy_images, create_network, free_subnet, leftovers, set_link, start_engines, stop_engines, teardown
from deployments.platform import Platform, Service, worker_online

TAG = "olab"  # make lab's namespaces, links and cgroups: olab-lab-1, olab1r, olabbr...
TEMPLATE_FIELDS = ("simulator_image", "allowed_images", "simulator_args", "data_mount", "simulator_env", "run_as", "job_network", "limits")


class Lab:
    """One lab's hosts: network and engines made by :meth:`create`, removed by :meth:`close`."""

    def __init__(self, spec: LabSpec) -> None:
        self.spec = spec
        self.engines: dict[str, subprocess.Popen] = {}
        self.copy_seconds: dict[str, float] = {}

    @classmethod
    def create(cls, spec: LabSpec, images: list[str]) -> "Lab":
        """Namespaces, bridge, engines, and the images copied into each engine (timed per host)."""
        lab = cls(spec)
        if (spec.state_dir / "lab.json").exists() or leftovers(spec):
            teardown(LabSpec.load(spec.state_dir) if (spec.state_dir / "lab.json").exists() else spec)  # a lab killed without its teardown
        spec.save()
        try:
            create_network(spec)
            lab.engines = start_engines(spec)
            lab.copy_seconds = copy_images(spec, images)
        except BaseException:
            lab.close()
            raise
        return lab

    def host_entries(self, data_dir: Path, template: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The lab hosts as hosts-file entries: the shared data root, the engine at its socket, no worker of
        ``make up``'s own (each host's worker runs in its namespace); simulator settings from ``template``."""
        base = {k: v for k, v in (template or {}).items() if k in TEMPLATE_FIELDS}
        return [{"name": n, "concurrency_limit": 2, **base, "volumes": [f"{data_dir}:{data_dir}"],
                 "docker_url": self.spec.docker_url(n), "start_worker": False, **({"data": "local"} if n in self.spec.local_data else {})}
                for n in self.spec.names]

    def enter(self, name: str) -> list[str]:
        """The prefix of a command run on the host: its network namespace, and a local_data host's mount
        namespace (its engine's: the private folder over the data root)."""
        if name in self.spec.local_data and name in self.engines:
            return [*self.spec.enter(name), f"--mount=/proc/{self.engines[name].pid}/ns/mnt"]
        return self.spec.enter(name)

    def api_url(self, platform: Platform) -> str:
        """The Prefect API as the lab hosts reach it: the bridge's address."""
        return f"http://{self.spec.bridge_ip}:{platform.prefect_port}/api"

    def start_relay(self, platform: Platform) -> Service:
        """The Prefect API on the bridge's address (deployments/lab_relay.py), a child the supervisor keeps alive."""
        ip, port = self.spec.bridge_ip, platform.prefect_port

        def answers() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex((ip, port)) == 0

        return platform.start("lab-relay", [sys.executable, "-m", "deployments.lab_relay", "--listen", f"{ip}:{port}",
                                            "--to", f"127.0.0.1:{port}"], answers, timeout=30)

    def start_workers(self, platform: Platform) -> list[Service]:
        """Each host's worker, ``make host``'s code inside the host's namespace, talking to the host's own engine."""
        services = []
        for name in self.spec.names:
            cmd = [*self.enter(name), sys.executable, "-m", "deployments.join_host", "--name", name]
            services.append(platform.start(
                f"worker-{name}", cmd, lambda n=name: worker_online(platform.prefect_api_url, n, auth=platform.prefect_auth_string),
                timeout=120, OPEVA_PREFECT_API_URL=self.api_url(platform), DOCKER_HOST=self.spec.docker_url(name)))
        return services

    def cut(self, name: str) -> None:
        set_link(self.spec, name, up=False)

    def heal(self, name: str) -> None:
        set_link(self.spec, name, up=True)

    def close(self) -> list[str]:
        """Engines stopped (each stops its containers), then everything else; returns what is left (nothing)."""
        stop_engines(self.engines)
        self.engines = {}
        return teardown(self.spec)


def simulator_images(template: dict[str, Any] | None) -> list[str]:
    """Every tag on the default engine of the repositories a lab host may run (its simulator images)."""
    repos = {r for r in [(template or {}).get("simulator_image"), *((template or {}).get("allowed_images") or [])] if r}
    if not repos:
        return []
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True)
    return sorted({line for line in out.stdout.split() if line.rsplit(":", 1)[0] in repos and not line.endswith(":<none>")})


def write_hosts_file(lab: Lab, settings: Any) -> Path:
    """The configured hosts file plus the lab hosts (their simulator settings from its first Docker host)."""
    raw = yaml.safe_load(Path(settings.hosts_file).read_text()) or {}
    hosts = list(raw.get("hosts") or [])
    template = next((h for h in hosts if h.get("kind", "docker") == "docker"), None)
    names = set(lab.spec.names)
    hosts = [h for h in hosts if h.get("name") not in names] + lab.host_entries(settings.shared_data_dir, template)
    path = lab.spec.state_dir / "hosts.yaml"
    path.write_text("# make lab: the configured hosts and the lab's (deployments/lab.py); removed when the lab stops\n"
                    + yaml.safe_dump({**raw, "hosts": hosts}, sort_keys=False))
    return path


def _lab_banner(lab: Lab) -> str:
    last = lab.spec.names[-1]
    lines = [f"Lab: {len(lab.spec.names)} host(s) on bridge {lab.spec.bridge} ({lab.spec.bridge_ip}/24); state in {lab.spec.state_dir}"]
    for name in lab.spec.names:
        lines.append(f"  {name}: namespace {lab.spec.netns(name)}, engine {lab.spec.docker_url(name)}, "
                     f"images copied in {lab.copy_seconds.get(name, 0):.1f} s"
                     + (f"; data: local (its own {lab.spec.private_data(name)} over the data root)" if name in lab.spec.local_data else ""))
    lines.append(f"Cut a host's link: make lab-cut HOST={last} (make lab-heal HOST={last} plugs it back)")
    return "\n".join(lines)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(hosts: int, local_data: tuple[str, ...] = ()) -> int:
    """``make lab``: the lab, then ``make up``'s start-up with the lab's hosts file, supervised until Ctrl-C or SIGTERM."""
    import signal

    from core.settings import RUNNING_FILE, PlatformSettings, record_running
    from deployments import up
    from deployments.platform import StartupError
    from deployments.supervisor import ChildKeepsDying, supervise

    settings = PlatformSettings()
    if os.geteuid() != 0:
        print("make lab: namespaces and engines need root", file=sys.stderr)
        return 2
    from deployments.platform import port_open

    if port_open(settings.api_port) or port_open(settings.prefect_port):  # never tear down a running lab's hosts
        print(f"make lab: ports {settings.api_port}/{settings.prefect_port} are taken: is make up or make lab running?", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the lab as Ctrl-C does
    spec = LabSpec(tag=TAG, hosts=hosts, subnet=free_subnet(0), state_dir=settings.home / "lab", local_data=local_data,
                   data_root=settings.shared_data_dir)
    if set(local_data) - set(spec.names):
        print(f"make lab: LOCAL_DATA names {', '.join(sorted(set(local_data) - set(spec.names)))}, not a lab host ({', '.join(spec.names)})",
              file=sys.stderr)
        return 2
    lab: Lab | None = None
    platform = Platform.from_settings(settings)
    try:
        if not up._use_docker(settings):
            print("make lab: the lab's hosts are Docker hosts; no Docker engine answers here", file=sys.stderr)
            return 2
        template = next((h for h in (yaml.safe_load(Path(settings.hosts_file).read_text()) or {}).get("hosts", [])
                         if h.get("kind", "docker") == "docker"), None)
        images = [settings.runtime_image, *simulator_images(template)]
        print(f"Starting {hosts} lab hosts; copying {', '.join(images)} into each engine...", flush=True)
        lab = Lab.create(spec, images)
        os.environ["OPEVA_HOSTS_FILE"] = str(write_hosts_file(lab, settings))
        types, amqp, tick = up._start(platform, True)
        lab.start_relay(platform)
        lab.start_workers(platform)
        record_running(PlatformSettings(), mongo_uri=platform.env()["MONGO_URI"])
        print(up._banner(platform, settings, types, amqp) + "\n" + _lab_banner(lab), flush=True)
        supervise(platform, tick=tick)
    except ChildKeepsDying as exc:
        print(f"Stopping the lab: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the lab...", flush=True)
    except (StartupError, RuntimeError) as exc:
        print(f"make lab: start-up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        up._ignore_stop_signals()
        (settings.home / RUNNING_FILE).unlink(missing_ok=True)
        platform.stop()
        left = lab.close() if lab is not None else teardown(spec)
        print("Stopped; nothing of the lab is left." if not left else f"Stopped; left behind: {', '.join(left)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    from core.settings import PlatformSettings

    parser = argparse.ArgumentParser(description="The lab of simulated hosts (docs/lab.md).")
    parser.add_argument("action", nargs="?", default="run", choices=["run", "cut", "heal"])
    parser.add_argument("--hosts", type=int, default=2, help="run: how many hosts (lab-1 … lab-N)")
    parser.add_argument("--host", help="cut/heal: which host, e.g. lab-2")
    parser.add_argument("--local-data", default="", help="run: hosts without the shared data root (data: local), e.g. lab-2 or lab-1,lab-2")
    args = parser.parse_args(argv)
    if args.action == "run":
        return run(args.hosts, tuple(n for n in args.local_data.split(",") if n.strip()))
    try:
        spec = LabSpec.load(PlatformSettings().home / "lab")
        if not args.host:
            parser.error(f"{args.action} needs --host (one of {', '.join(spec.names)})")
        set_link(spec, args.host, up=args.action == "heal")
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"make lab-{args.action}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.host}: link {'up' if args.action == 'heal' else 'down'} ({spec.veth_root(args.host)}) at {time.strftime('%H:%M:%S')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
