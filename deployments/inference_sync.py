"""``make up``'s tick for inference targets created through the API (core/inference_registry.py).

The API only records a target; this pass, run by the supervisor loop every few seconds, makes the
children match the registry: a new platform target is started exactly as a hosts.yaml one is
(deployments/inference_targets.py: the same ``run_command``, the same sandbox, a supervised child),
a removed one (or one whose command changed, e.g. removed and made again with other limits) is
stopped and its container removed. hosts.yaml's targets are never touched here (they are started
once by ``make up``). A target that fails to start is logged, not retried before
:data:`RETRY_SECONDS`, and never stops the platform; an unreadable registry stops nothing (the
pass is skipped and said once per :data:`RETRY_SECONDS`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

from core import inference_registry
from core.hosts import load_hosts
from core.inference_targets import Target, container_name, targets
from deployments.platform import Platform, StartupError, kill_group
from deployments.supervisor import say

PASS_SECONDS = 2.0
RETRY_SECONDS = 60.0
PREFIX = "inference-"


class TargetSync:
    """Holds what it started (hosts.yaml's children are not its to stop) and its failures' back-off."""

    def __init__(self, platform: Platform, runtime_image: str, pass_seconds: float = PASS_SECONDS) -> None:
        self.platform = platform
        self.runtime_image = runtime_image
        self.pass_seconds = pass_seconds
        self.next_pass = 0.0
        self.image: str | None = None
        self.mine: set[str] = set()  # target ids whose child this started
        self.failed: dict[str, float] = {}  # target id -> monotonic time before which it is not retried

    def tick(self) -> None:
        """At most one pass per ``pass_seconds``; never raises (the supervisor loop must go on)."""
        if time.monotonic() < self.next_pass:
            return
        self.next_pass = time.monotonic() + self.pass_seconds
        try:
            self.sync()
        except Exception as exc:  # noqa: BLE001 (a registry or engine problem: said once, tried again later)
            self.next_pass = time.monotonic() + RETRY_SECONDS
            say(f"inference targets not synced (next try in {RETRY_SECONDS:.0f} s): {exc}")

    def wanted(self) -> dict[str, Target]:
        """The API's platform targets on this machine's engine, by id."""
        hosts = load_hosts()
        out = {}
        for t in targets(hosts, self.platform.home):
            host = hosts.get(t.host)
            if t.declared == "api" and not t.external and host is not None and host.docker_url is None:
                out[t.id] = t
        return out

    def sync(self) -> tuple[list[str], list[str]]:
        """One pass; (ids started, ids stopped)."""
        from deployments.inference_targets import ensure_inference_image, run_command

        inference_registry.read(self.platform.home)  # RegistryError on a bad file: this pass stops nothing
        wanted = self.wanted()
        self.failed = {i: t for i, t in self.failed.items() if i in wanted}
        running = {s.name[len(PREFIX):]: s for s in self.platform.services if s.name.startswith(PREFIX)}
        if wanted and self.image is None:
            self.image = ensure_inference_image(self.runtime_image)
        commands = {i: run_command(t, self.platform.home, self.platform.data_dir, self.image or "") for i, t in wanted.items()}
        stopped = [i for i in sorted(self.mine) if i not in wanted or (i in running and running[i].cmd != commands[i])]
        for target_id in stopped:
            self.stop(target_id)
        running_now = {s.name[len(PREFIX):] for s in self.platform.services if s.name.startswith(PREFIX)}
        started = []
        now = time.monotonic()
        for target_id, target in wanted.items():
            if target_id in running_now or self.failed.get(target_id, 0) > now:
                continue
            if self.start(target, commands[target_id]):
                started.append(target_id)
        return started, stopped

    def start(self, target: Target, cmd: list[str]) -> bool:
        from deployments.inference_targets import prepare, ready_check

        name = f"{PREFIX}{target.id}"
        prepare(target, self.platform.home, self.platform.data_dir)
        try:
            self.platform.start(name, cmd, ready_check(self.platform.home, target.id), timeout=60, vital=False)
        except StartupError as exc:
            self.platform.services = [s for s in self.platform.services if s.name != name]
            remove_container(target.container_name)
            self.failed[target.id] = time.monotonic() + RETRY_SECONDS
            say(f"inference target {target.id} not started (next try in {RETRY_SECONDS:.0f} s): {str(exc)[:500]}")
            return False
        self.mine.add(target.id)
        self.failed.pop(target.id, None)
        say(f"inference target {target.id} started (created through the API)")
        return True

    def stop(self, target_id: str) -> None:
        """The child out of supervision first (so it is not restarted), then ended, then its container gone."""
        name = f"{PREFIX}{target_id}"
        service = next((s for s in self.platform.services if s.name == name), None)
        self.platform.services = [s for s in self.platform.services if s.name != name]
        self.mine.discard(target_id)
        if service is not None:
            _end(service.proc)
        remove_container(container_name(self.platform.home, target_id))
        say(f"inference target {target_id} stopped (removed through the API)")


def _end(proc: Any) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        pass
    kill_group(proc)


def remove_container(name: str | None) -> None:
    """``docker rm -f``: a ``docker run`` client killed before its container ended leaves it running."""
    if name:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
