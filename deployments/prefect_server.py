"""``prefect server ...`` with the work-pool schema check memoised.

Why: profiling the server under a burst of submissions (py-spy, bench/submit_burst.py)
showed two thirds of its event-loop time in ``create_flow_run_from_deployment``
re-checking that the Docker pool's job-variables *schema* is a valid JSON schema
(``is_valid_schema`` and ``jsonschema.validate``, each a full metaschema validation
of a ~40-property schema), for every run. The schema changes only when a pool is
edited, so a check that passed once is remembered, keyed by the schema's content;
a new or edited schema is checked as before, and the *values* of every run's job
variables are still validated each time.

On SQLite, every write transaction also begins IMMEDIATE (``sqlite_writes_immediate``).
Why: Prefect begins most of them DEFERRED, so a transaction that reads (the deployment)
and then writes (the new run) must upgrade its read lock; when another writer committed
in between, SQLite answers "database is locked" at once, without waiting its busy
timeout (WAL's snapshot rule). The server turns that into a 503 and Prefect's client
backs off 2, 4, 8... s: under a burst of submissions the median was 0.03 s and the
p95 10 s, with thousands of lock errors in the server log. Taking the write lock at
BEGIN makes writers queue on the busy timeout instead. Everything else is Prefect's
own CLI.

A Failed, Crashed or Cancelled run is kept so against a late non-forced Running/Completed
report (``deployments/keep_final.py``). The events of a run Prefect's scheduler made reach
automations at once, not 15 minutes late (``deployments/scheduled_events.py``). A worker's poll
records itself (queues' and deployments' ``last_polled``) at most every 5 s per pool, half of
each poll's server CPU (``deployments/poll_bookkeeping.py``).

Guards: the patches reach into Prefect's internals, so they are applied only to the
Prefect versions they were measured on (``PATCHED_VERSIONS``); another version is
refused with a message (``OPEVA_PREFECT_PATCHES=0`` runs Prefect's CLI unpatched). They
live in this process only, so ``--workers`` > 1 and ``--background`` (children of their
own) are refused too. A write waits at most ``OPEVA_SQLITE_LOCK_WAIT`` seconds (default
60) for the queue, then gets SQLite's own "database is locked", which the server answers
503 and Prefect's client retries: never a hang.

Usage: python -m deployments.prefect_server server start --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MAX_REMEMBERED = 256
PATCHED_VERSIONS = frozenset({"3.8.8"})
DEFAULT_LOCK_WAIT_SECONDS = 60.0


class PatchRefused(RuntimeError):
    """The patches do not fit this Prefect or this command line."""


def check_patchable(argv: list[str]) -> None:
    """Refuse, with what to do, before anything is patched."""
    import prefect
    import prefect.server.models  # noqa: F401 (first: instrumentation_policies alone is a circular import in 3.8.8)
    from prefect.server.database import configurations
    from prefect.server.orchestration import instrumentation_policies
    from prefect.utilities.schema_tools import validation

    import docket

    if prefect.__version__ not in PATCHED_VERSIONS:
        raise PatchRefused(f"deployments.prefect_server patches Prefect {', '.join(sorted(PATCHED_VERSIONS))}, not {prefect.__version__}: "
                           "pin prefect to that version, or set OPEVA_PREFECT_PATCHES=0 to run Prefect's server unpatched")
    missing = [name for name, ok in (
        ("validation._VALIDATOR.check_schema", hasattr(getattr(validation, "_VALIDATOR", None), "check_schema")),
        ("configurations.SQLITE_BEGIN_MODE", hasattr(configurations, "SQLITE_BEGIN_MODE")),
        ("AioSqliteConfiguration.begin_transaction", hasattr(getattr(configurations, "AioSqliteConfiguration", None), "begin_transaction")),
        ("instrumentation_policies.flow_run_state_change_event", hasattr(instrumentation_policies, "flow_run_state_change_event")),
        ("docket.Docket.add", hasattr(getattr(docket, "Docket", None), "add")),
    ) if not ok]
    if missing:
        raise PatchRefused(f"Prefect {prefect.__version__} lacks {', '.join(missing)}: the patches do not fit; set OPEVA_PREFECT_PATCHES=0")
    workers = _option(argv, "--workers")
    if "--background" in argv or (workers is not None and workers != "1"):
        raise PatchRefused("the patches apply in this process only: run without --workers/--background "
                           "(or set OPEVA_PREFECT_PATCHES=0)")


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def lock_wait_seconds() -> float:
    try:
        value = float(os.environ.get("OPEVA_SQLITE_LOCK_WAIT", DEFAULT_LOCK_WAIT_SECONDS))
    except ValueError:
        raise PatchRefused("OPEVA_SQLITE_LOCK_WAIT must be a number of seconds") from None
    if not 0 < value <= 3600:
        raise PatchRefused("OPEVA_SQLITE_LOCK_WAIT must be between 0 and 3600 seconds")
    return value


def memoise_schema_checks() -> None:
    from prefect.utilities.schema_tools import validation

    validator = validation._VALIDATOR
    check = validator.check_schema  # a bound classmethod
    passed: set[str] = set()

    def check_schema(schema: Any, *args: Any, **kwargs: Any) -> None:
        try:
            key = json.dumps([schema, sorted(kwargs)], sort_keys=True, default=repr)
        except (TypeError, ValueError):
            return check(schema, *args, **kwargs)
        if key in passed:
            return None
        check(schema, *args, **kwargs)  # raises SchemaError for an invalid schema: never remembered
        if len(passed) >= MAX_REMEMBERED:
            passed.clear()
        passed.add(key)
        return None

    validator.check_schema = staticmethod(check_schema)


def sqlite_writes_immediate(wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS) -> None:
    """Write transactions on SQLite begin IMMEDIATE, one at a time per event loop, in
    arrival order. Why the queue: SQLite's busy handler retries a locked BEGIN after
    sleeps growing to 100 ms, so under contention a writer can lose every race for
    seconds (median 0.2 s, p95 2.7 s in the burst bench) while the lock sat idle
    between tries; an asyncio.Lock hands it over at once, first come first served.
    A task already inside a write transaction does not queue again (no self-deadlock);
    statements outside ``begin_transaction`` still rely on the busy timeout. A writer that
    waits ``wait_seconds`` gets SQLite's "database is locked" (a 503 the client retries)."""
    import asyncio
    import sqlite3
    from contextlib import asynccontextmanager
    from contextvars import ContextVar

    import sqlalchemy.exc
    from prefect.server.database import configurations

    locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
    holding: ContextVar[bool] = ContextVar("opeva_sqlite_write_lock", default=False)

    @asynccontextmanager
    async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        lock = None if holding.get() else locks.setdefault(loop, asyncio.Lock())
        if lock is not None:
            try:
                await asyncio.wait_for(lock.acquire(), wait_seconds)
            except asyncio.TimeoutError:
                raise sqlalchemy.exc.OperationalError(
                    "BEGIN IMMEDIATE (OPEVA write queue)", None, sqlite3.OperationalError("database is locked")
                ) from None
        held = holding.set(True)
        mode = configurations.SQLITE_BEGIN_MODE.set("IMMEDIATE")
        try:
            async with session.begin() as transaction:
                yield transaction
        finally:
            configurations.SQLITE_BEGIN_MODE.reset(mode)
            holding.reset(held)
            if lock is not None:
                lock.release()

    configurations.AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]


def main() -> int:
    os.umask(0o077)  # prefect.db, its WAL and journal files: the platform's user only
    if os.environ.get("OPEVA_PREFECT_PATCHES", "1") != "0":
        try:
            check_patchable(sys.argv[1:])
            wait = lock_wait_seconds()
            from deployments import poll_bookkeeping

            poll_window = poll_bookkeeping.window_seconds()
        except (PatchRefused, ValueError) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
        memoise_schema_checks()
        sqlite_writes_immediate(wait)
        from deployments.keep_final import install

        install()  # a late report cannot resurrect a final state (deployments/keep_final.py)
        from deployments import scheduled_events

        scheduled_events.install()  # a scheduled run's events reach automations at once (deployments/scheduled_events.py)
        poll_bookkeeping.install(poll_window)  # a worker's poll records itself at most every 5 s per pool (deployments/poll_bookkeeping.py)
    # The notification blocks' classes: the server's automation actions load them (blocks/notifications.py)
    import blocks.notifications

    blocks.notifications.record_in_this_server()
    from prefect.cli import app

    sys.argv[0] = "prefect"
    return app()


if __name__ == "__main__":
    sys.exit(main())
