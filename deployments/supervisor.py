"""Keep `make up`'s children alive: restart a child that dies, with back-off, and
give up only when one keeps dying.

Why: one dead child (a worker killed by the OOM killer, a crashed API) used to stop
the whole platform, Prefect server and MongoDB included. Jobs already running are
Docker containers that report to the Prefect server by themselves, so restarting
a worker or the API loses nothing; only a child that cannot stay up is a reason to
stop, and then the operator is told which one and why (its exit code and log tail).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from deployments.platform import Platform, Service, StartupError, kill_group


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off ``first * 2**k`` seconds (capped), and at most ``max_deaths`` deaths within ``window``."""

    first: float = 1.0
    cap: float = 30.0
    max_deaths: int = 5
    window: float = 300.0

    def delay(self, deaths: int) -> float:
        return min(self.cap, self.first * 2 ** max(0, deaths - 1))


class ChildKeepsDying(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S} {message}", flush=True)


def _log_tail(service: Service, chars: int = 1500) -> str:
    try:
        return service.log_path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _mark(service: Service, line: str) -> None:
    """Also note the restart in the child's own log, where its crash is."""
    with open(service.log_path, "a") as log:
        log.write(f"\n--- opeva supervisor {datetime.now():%Y-%m-%d %H:%M:%S}: {line}\n")


def check_children(platform: Platform, policy: RestartPolicy, now: float | None = None) -> None:
    """One supervision pass: schedule restarts for newly dead children, run the due ones.

    Children are visited in start order, so a dead Prefect server is back before the
    workers and the API that need it are restarted.
    """
    for service in list(platform.services):
        code = service.proc.poll()
        if code is None:
            continue
        now = time.monotonic() if now is None else now
        if service.restart_at is None:
            kill_group(service.proc)  # its grandchildren (e.g. uvicorn under `prefect server start`)
            service.deaths = [t for t in service.deaths if now - t < policy.window] + [now]
            if len(service.deaths) > policy.max_deaths and not service.vital:
                service.restart_at = float("inf")  # kept in the list (its name stays taken), never restarted
                say(f"{service.name} died {len(service.deaths)} times within {policy.window:.0f} s (last exit code {code}); "
                    f"not restarted again, the platform goes on without it. End of {service.log_path}:\n{_log_tail(service)}")
                _mark(service, f"exited with code {code}; given up")
                continue
            if len(service.deaths) > policy.max_deaths:
                raise ChildKeepsDying(
                    f"{service.name} died {len(service.deaths)} times within {policy.window:.0f} s "
                    f"(last exit code {code}); giving up. End of {service.log_path}:\n{_log_tail(service)}"
                )
            delay = policy.delay(len(service.deaths))
            service.restart_at = now + delay
            say(f"{service.name} exited with code {code}; restarting in {delay:.0f} s "
                f"(death {len(service.deaths)} of at most {policy.max_deaths} in {policy.window:.0f} s; log {service.log_path})")
            _mark(service, f"exited with code {code}; restart in {delay:.1f} s")
        elif now >= service.restart_at:
            service.restart_at = None
            try:
                platform.spawn(service)
            except StartupError as exc:  # counted as another death on the next pass
                say(f"{service.name} failed to restart: {str(exc).splitlines()[0]}")
                continue
            say(f"{service.name} restarted (pid {service.proc.pid})")
            _mark(service, f"restarted as pid {service.proc.pid}")


def supervise(platform: Platform, policy: RestartPolicy = RestartPolicy(), interval: float = 0.5,
              until: Callable[[], bool] = lambda: False, tick: Callable[[], None] | None = None) -> None:
    """Run until ``until()`` (or Ctrl-C / SIGTERM, which raise out of here); ChildKeepsDying when one child cannot stay up.
    ``tick`` runs every pass too (the jobs' reconciler, deployments/reconcile.py: it keeps its own pace)."""
    while not until():
        check_children(platform, policy)
        if tick is not None:
            tick()
        time.sleep(interval)


if __name__ == "__main__":  # pragma: no cover - a usage hint only
    sys.exit("run `python -m deployments.up` (make up); this module is its supervisor")
