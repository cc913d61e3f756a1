"""Automatic host selection, the Prefect-free part: which online host takes a job next.

A host's slots are its work pool's concurrency limit (Prefect holds back runs beyond it), so
"a free slot" is fewer active runs (queued, pending or running) than the limit: a queued run
already has the next free slot. Among the hosts with a free slot the first in the hosts file
wins (the operator's order is the preference); when none has one, the job goes where its wait
is shortest per slot, so automatic jobs spread over busy hosts instead of piling on the first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostLoad:
    name: str
    limit: int | None  # the pool's concurrency limit; None: unlimited
    active: int  # its runs not final: scheduled, pending, running, cancelling, paused

    @property
    def free(self) -> bool:
        return self.limit is None or self.active < self.limit

    @property
    def per_slot(self) -> float:
        return 0.0 if self.limit is None else self.active / max(self.limit, 1)


def pick(loads: list[HostLoad]) -> str:
    """The host an automatic job goes to (``loads`` in the hosts file's order, at least one)."""
    return min(enumerate(loads), key=lambda il: (not il[1].free, 0.0 if il[1].free else il[1].per_slot, il[0]))[1].name


@dataclass(frozen=True)
class Waiting:
    """A queued job of a lost host."""

    job_id: str
    automatic: bool  # placed automatically (no target_host): it may move
    profile: str | None  # cpu/gpu when the placement was by profile
    own_variables: bool  # it set job variables (resources) fitted to its host's limits


def plan_moves(waiting: list[Waiting], loads: list[HostLoad], gpu_hosts: set[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Where a lost host's queued jobs go: ``(moves [(job_id, host)], kept [(job_id, why)])``.

    Only automatic jobs move (a pinned job waits for its host, or an operator requeues it:
    POST /ops/jobs/{id}/requeue); one that set its own resources stays too, because those were
    checked against the lost host's limits, not the new one's. Each move takes a slot, so a
    batch spreads over the hosts as separate submissions would."""
    loads = list(loads)
    moves: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    for job in waiting:
        if not job.automatic:
            kept.append((job.job_id, "pinned to this host: it waits for it (or requeue it: POST /ops/jobs/{id}/requeue)"))
            continue
        if job.own_variables:
            kept.append((job.job_id, "it set resources checked against this host's limits: requeue it by hand"))
            continue
        fits = [i for i, load in enumerate(loads) if job.profile is None or (load.name in gpu_hosts) == (job.profile == "gpu")]
        if not fits:
            kept.append((job.job_id, f"no other host with a worker online fits {'profile ' + job.profile if job.profile else 'it'}"))
            continue
        name = pick([loads[i] for i in fits])
        moves.append((job.job_id, name))
        i = next(i for i in fits if loads[i].name == name)
        loads[i] = HostLoad(name, loads[i].limit, loads[i].active + 1)
    return moves, kept
