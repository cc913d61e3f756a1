"""The inference image and the platform's inference targets' containers (``make up``, the tests).

The image (``opeva-inference:<tag of the runtime image>``) is the base the runtime image is built
on (``python:3.11-slim``, or the local debootstrap Debian ``opeva-base:bookworm`` on a machine
without a registry) plus ``inference/``: the service is standard-library Python, so it needs none
of the runtime image's 460 MB of packages. Made from that cached base with the engine's build
(no pull), in about a second; rebuilt only when ``inference/`` or the base changes (a label keeps
their digest).

A platform target's container has the jobs' sandbox rules and less: uid 65534, no capabilities,
no-new-privileges, read-only root, bounded memory/CPU/pids, **no network at all** (``--network
none``: it answers on a Unix socket in its one writable mount ``<home>/run/inference/<id>/``), no
credential in its environment, and the bundle store mounted read-only. It is a supervised child of
``make up`` (``docker run --rm`` in the foreground), started with no bundle loaded.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shlex
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import bundle_store
from core.hosts import HostsFile, load_hosts
from core.inference_targets import (
    REMEMBERED_NAME,
    SOCKET_DIR_IN_CONTAINER,
    SOCKET_NAME,
    Target,
    socket_path,
    targets,
)
from core.settings import PROJECT_ROOT

log = logging.getLogger("opeva.setup")
BASES = ("python:3.11-slim", "opeva-base:bookworm")  # deployments/build_image.sh's two bases
SOURCE_LABEL = "org.opeva.inference.source"
UID = "65534:65534"


def image_tag(runtime_image: str) -> str:
    repo_tag = runtime_image.rsplit("/", 1)[-1]
    return f"opeva-inference:{repo_tag.split(':', 1)[1] if ':' in repo_tag else 'latest'}"


def _context(base: str, base_id: str) -> tuple[bytes, str]:
    files = sorted((PROJECT_ROOT / "inference").glob("*.py"))
    digest = hashlib.sha256(f"{base}\0{base_id}".encode())
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    source = digest.hexdigest()[:16]
    dockerfile = (
        f"FROM {base}\n"
        f'LABEL {SOURCE_LABEL}="{source}" org.opencontainers.image.description="OPEVA inference service"\n'
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/opt/opeva\n"
        "COPY inference/ /opt/opeva/inference/\n"
        f"USER {UID}\n"
        'ENTRYPOINT ["python3", "-m", "inference.service"]\n'
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [("Dockerfile", dockerfile.encode()), *((f"inference/{f.name}", f.read_bytes()) for f in files)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), source


def ensure_inference_image(runtime_image: str) -> str:
    """Build (or keep) the inference image; returns its tag. Base: OPEVA_INFERENCE_BASE, else the
    first of :data:`BASES` present, else the runtime image itself (it has Python too)."""
    import docker
    from docker.errors import ImageNotFound

    tag = image_tag(runtime_image)
    client = docker.from_env(timeout=120)
    try:
        candidates = [os.environ["OPEVA_INFERENCE_BASE"]] if os.environ.get("OPEVA_INFERENCE_BASE") else [*BASES, runtime_image]
        base, base_id = None, ""
        for name in candidates:
            try:
                base, base_id = name, client.images.get(name).id
                break
            except ImageNotFound:
                continue
        if base is None:
            raise RuntimeError(f"no base image for the inference image: none of {candidates} is present (make image)")
        context, source = _context(base, base_id)
        try:
            if client.images.get(tag).labels.get(SOURCE_LABEL) == source:
                return tag
        except ImageNotFound:
            pass
        client.images.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True, pull=False)
        log.info("inference image %s built on %s", tag, base)
        return tag
    finally:
        client.close()


def run_command(target: Target, home: Path, data_dir: Path, image: str) -> list[str]:
    """``docker run`` of a platform target, removing first a container a killed platform left."""
    spec = target.spec
    run = [
        "docker", "run", "--rm", "--name", target.container_name, "--network", "none",
        "--user", UID, "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--read-only",
        "--memory", spec.memory, "--memory-swap", spec.memory, "--cpus", str(spec.cpus), "--pids-limit", str(spec.pids),
        "--ulimit", "nofile=1024:1024", "--tmpfs", "/tmp:size=16m,mode=1777",
        "--label", "opeva.role=inference", "--label", f"opeva.inference_target={target.id}",
        "-v", f"{bundle_store.store_dir(data_dir)}:{target.bundle_mount_path}:ro",
        "-v", f"{socket_path(home, target.id).parent}:{SOCKET_DIR_IN_CONTAINER}",
        image, "--listen", f"unix:{SOCKET_DIR_IN_CONTAINER}/{SOCKET_NAME}", "--bundle-root", target.bundle_mount_path,
        "--remember", f"{SOCKET_DIR_IN_CONTAINER}/{REMEMBERED_NAME}",
    ]
    return ["sh", "-c", f"docker rm -f {shlex.quote(target.container_name or '')} >/dev/null 2>&1; exec {shlex.join(run)}"]


def prepare(target: Target, home: Path, data_dir: Path) -> None:
    """The socket's folder, writable by the container's uid only (its parent private to the platform),
    no stale socket and no remembered load (a platform starts its targets empty; only a restart
    by the supervisor, which skips this, reloads); the bundle store present (an empty one is mounted too)."""
    run_dir = socket_path(home, target.id).parent
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(run_dir.parent, 0o700)
    run_dir.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(run_dir, 65534, 65534)
        os.chmod(run_dir, 0o700)
    else:
        os.chmod(run_dir, 0o777)  # no chown without root; the private parent keeps other users out
    socket_path(home, target.id).unlink(missing_ok=True)
    (run_dir / REMEMBERED_NAME).unlink(missing_ok=True)
    bundle_store.store_dir(data_dir).mkdir(parents=True, exist_ok=True)


def ready_check(home: Path, target_id: str) -> Callable[[], bool]:
    """The target answers ``GET /health`` on its socket (the supervisor's readiness test)."""
    import httpx

    sock = str(socket_path(home, target_id))

    def ready() -> bool:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://inference", timeout=1) as c:
                return c.get("/health").status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    return ready


def start_inference_targets(platform: Any, runtime_image: str, hosts: HostsFile | None = None) -> list[Any]:
    """Start every hosts.yaml platform target of the hosts on this machine's engine (hosts with a ``docker_url``
    are another machine's: declare their targets with a ``base_url`` instead); returns the children.
    Targets created through the API are started by ``make up``'s loop (deployments/inference_sync.py)."""
    from deployments.platform import StartupError

    hosts = hosts or load_hosts()
    started = []
    local = [t for t in targets(hosts, platform.home)
             if t.declared == "hosts.yaml" and not t.external and hosts.get(t.host).docker_url is None]
    if not local:
        return started
    image = ensure_inference_image(runtime_image)
    for target in local:
        prepare(target, platform.home, platform.data_dir)
        name = f"inference-{target.id}"
        try:
            started.append(platform.start(name, run_command(target, platform.home, platform.data_dir, image),
                                          ready_check(platform.home, target.id), timeout=60, vital=False))
        except StartupError as exc:  # not supervised further: a target that cannot start must not stop the platform
            platform.services = [s for s in platform.services if s.name != name]
            log.warning("inference target %s not started: %s", target.id, exc)
            print(f"Inference target {target.id} not started: {str(exc)[:500]}", flush=True)
    return started
