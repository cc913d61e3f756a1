"""Group commit: items that callers hand in while a call is under way go out together
in the next call.

Why: the Prefect server creates flow runs one write transaction at a time (SQLite has
a single writer, and each create costs the server ~25 ms of CPU), so under a burst
of submissions every request queued behind the others: ~30 runs/s, and a p95 that
grew with the number of concurrent clients. Prefect's bulk endpoint creates up to
100 runs of one deployment in one transaction for ~15 ms each. Nothing waits on a
timer here: a lone submission goes out at once; while a call is in flight, the
next ones gather and leave together as soon as it returns, so a batch is exactly
as large as the backlog.

Prefect-free on purpose: the flush function (the gateway's) does the calling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[K, list[T]], Awaitable[list["R | Exception"]]]


@dataclass
class _Lane(Generic[T, R]):
    pending: list[tuple[T, asyncio.Future[R]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class GroupCommit(Generic[K, T, R]):
    """``await submit(key, item)`` returns ``item``'s result from ``flush(key, items)``.

    One call per key is in flight at a time (keys are independent: one deployment's
    batch does not wait for another's). ``flush`` returns one result or exception
    per item, in order; an exception it raises is every item's answer.
    """

    def __init__(self, flush: Flush, max_batch: int = 100) -> None:
        self._flush = flush
        self._max = max_batch
        self._lanes: dict[K, _Lane[T, R]] = {}

    async def submit(self, key: K, item: T) -> R:
        lane = self._lanes.setdefault(key, _Lane())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        lane.pending.append((item, future))
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._drain(key, lane))
        # A caller that goes away (client disconnect) does not cancel the others' call.
        return await asyncio.shield(future)

    async def _drain(self, key: K, lane: _Lane[T, R]) -> None:
        while lane.pending:
            batch, lane.pending = lane.pending[: self._max], lane.pending[self._max :]
            try:
                results = await self._flush(key, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"flush answered {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - every caller of this batch gets it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        if self._lanes.get(key) is lane and not lane.pending:
            del self._lanes[key]
