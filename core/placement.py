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
