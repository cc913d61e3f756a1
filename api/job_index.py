"""A read model of the job flow runs, so a listing does not re-read every run from Prefect.

Why: the OPEVA UIs poll ``GET /jobs`` (all jobs) every few seconds, and Prefect takes
1–2 s to page through 1,000 runs with their parameters on this machine. Runs in a final
state almost never change, so they are kept here; everything else is read live.

Prefect stays the only holder of state: this is a cache rebuilt from it at start, and kept
current by (1) a live read of the runs not yet final on every listing (a few: the queue and
what runs), (2) a re-read of any run that left that set since the last listing, (3) every
write through the gateway (``PrefectGateway.touched``), (4) Prefect's event stream (changes
by workers, other API replicas, the Prefect UI), and (5) a count check: when Prefect counts
more or fewer job runs than the index holds, it is rebuilt before answering. Each API
process (replica) keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable
from datetime import datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.schemas.objects import FlowRun

from api.gateway import MAX_SCAN, PrefectGateway, opeva_status
from core.states import PREFECT_TYPES

log = logging.getLogger("opeva.api.index")
T = TypeVar("T")
SPLIT_STATUSES = ("stopped", "canceled", "stop_requested", "setup", "running")  # told apart by run_count or a label
SETTLE_SECONDS = 10.0
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def _final(run: FlowRun) -> bool:
    return bool(run.state and run.state.is_final())


def matches(run: FlowRun, status: str | None, host: str | None, flow: str | None, tag: str | None = None) -> bool:
    """The same selection as ``PrefectGateway.list_runs`` (state types, or the OPEVA status where types cannot tell)."""
    if host and run.work_pool_name != host:
        return False
    if tag and tag not in (run.tags or ()):
        return False
    if status in SPLIT_STATUSES:
        return opeva_status(run) == status
    if status:
        return bool(run.state) and run.state.type.value in PREFECT_TYPES[status]
    return True


class JobIndex:
    """Final job runs by id, with memos of what is derived from them (list items, failure codes)."""

    def __init__(self, gateway: PrefectGateway) -> None:
        self.gateway = gateway
        self._final: dict[UUID, FlowRun] = {}
        self._active: set[UUID] = set()
        self._dirty: set[UUID] = set()
        self._memo: dict[tuple[UUID, Any, Hashable], Any] = {}
        self._ready = False
        self._refresh: asyncio.Future[list[FlowRun]] | None = None
        self._started = 0  # refreshes started so far; _refresh_number is the one under way
        self._refresh_number = 0
        gateway.touched = self._dirty.add

    @property
    def ready(self) -> bool:
        return self._ready

    async def rebuild(self) -> None:
        runs = await self.gateway.job_runs()
        self._final = {r.id: r for r in runs if _final(r)}
        self._active = {r.id for r in runs if not _final(r)}
        self._memo = {k: v for k, v in self._memo.items() if k[0] in self._final}
        self._ready = True

    async def runs(self) -> list[FlowRun]:
        """Every job run, newest expected start first, current as of this call: the answer comes
        from a refresh that started after the call did. Listings that arrive while a refresh is
        under way wait for it, then share one refresh between them."""
        arrival = self._started
        while True:
            if self._refresh is not None and not self._refresh.done():
                if self._refresh_number > arrival:
                    return await asyncio.shield(self._refresh)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._refresh)  # started before this call: not current enough
                continue
            self._started += 1
            self._refresh_number = self._started
            self._refresh = asyncio.ensure_future(self._refreshed())
            return await asyncio.shield(self._refresh)

    async def _refreshed(self) -> list[FlowRun]:
        changed = self._dirty
        self._dirty = set()
        try:
            active, total = await asyncio.gather(self.gateway.job_runs(active_only=True), self.gateway.count_job_runs())
            live = {r.id: r for r in active}
            changed |= self._active - live.keys()
            fresh = {r.id: r for r in await self.gateway.runs_by_id(sorted(changed))} if changed else {}
        except BaseException:
            self._dirty |= changed  # read again next time
            raise
        for run_id in changed:
            self._final.pop(run_id, None)
            run = fresh.get(run_id)
            if run is not None and _final(run):
                self._final[run_id] = run
        for run_id in live:
            self._final.pop(run_id, None)  # re-run by an operator: live again
        self._active = set(live)
        if min(total, MAX_SCAN) != min(len(self._final) + len(live), MAX_SCAN):  # made and ended unseen, or deleted elsewhere
            await self.rebuild()  # (a run made between the two reads above also lands here: rare, and correct)
            live = {r.id: r for r in await self.gateway.job_runs(active_only=True)}
            self._active = set(live)
        merged = [*live.values(), *(r for r in self._final.values() if r.id not in live)]
        merged.sort(key=lambda r: (r.expected_start_time or _EPOCH, r.id), reverse=True)
        return merged

    def memo(self, run: FlowRun, key: Hashable, make: Callable[[], T]) -> T:
        """``make()`` once per final run state (its id and state id); computed afresh otherwise, and
        for SETTLE_SECONDS after the run ended (its last files and logs may still be landing)."""
        ended = run.state.timestamp if run.state else None
        if not _final(run) or ended is None or (datetime.now(timezone.utc) - ended).total_seconds() < SETTLE_SECONDS:
            return make()
        slot = (run.id, run.state.id if run.state else None, key)
        if slot not in self._memo:
            self._memo[slot] = make()
        return self._memo[slot]

    async def follow(self) -> None:
        """Marks runs changed as Prefect's event stream reports them; rebuilt after a gap."""
        while True:
            try:
                async for run_id in self.gateway.run_changes():
                    self._dirty.add(run_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream dropped past its own reconnects: start over
                log.warning("event stream lost (%s); rebuilding the job index", exc)
            await asyncio.sleep(2)
            with contextlib.suppress(Exception):
                await self.rebuild()
