"""How soon a host's worker is back online after its link to the server returns.

A Prefect 3.8 worker keeps a websocket to the server (its "worker channel") and heartbeats over it;
the server shows the worker ONLINE from that heartbeat (or from the REST heartbeat it falls back to
while the channel is down). After a link cut, the channel retries with a doubling delay capped at
30 s, and the REST fallback's requests retry with sleeps of 2, 4, 8, 16 and 32 s. So a host whose
link came back showed online after whatever was left of those sleeps: 1.1 to 15.3 s in the lab's
120 s cuts (bench/lab.py), and measured up to the 30 s cap (docs/lab.md has the trace).

The cap is a constructor argument of Prefect's channel that the worker does not expose as a
setting. :class:`QuickChannelReconnect` lowers it to :data:`RECONNECT_MAX_SECONDS` on the channel
the worker builds, so a returning host is retried every few seconds: a failed reconnect costs one
TCP connect (or an ARP probe while the link is still down), nothing on the server. The attribute
is Prefect's private one: tests/fast/test_worker_channel.py fails if a Prefect upgrade moves it,
and here a missing attribute only logs a warning (the worker keeps Prefect's 30 s cap).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

RECONNECT_MAX_SECONDS = 4.0


class QuickChannelReconnect:
    """Mixin for a Prefect worker class: its channel reconnects at most :data:`RECONNECT_MAX_SECONDS` apart."""

    _worker_channel: Any
    _logger: Any
    _cap_missing_told = False

    def _ensure_worker_channel(self) -> None:
        """Prefect calls this before every sync (heartbeat); the cap is lowered once the channel exists."""
        super()._ensure_worker_channel()  # type: ignore[misc]
        transport = getattr(self._worker_channel, "_transport", None)
        if transport is None or not hasattr(transport, "_reconnect_max_seconds"):
            if self._worker_channel is not None and not self._cap_missing_told:
                self._cap_missing_told = True
                self._logger.warning("this Prefect's worker channel has no reconnect cap to lower: a returning link "
                                     "may take up to Prefect's own cap (30 s) to show the host online")
            return
        transport._reconnect_max_seconds = min(transport._reconnect_max_seconds, RECONNECT_MAX_SECONDS)


def serve_main(worker_class: type, description: str, *, forward_signals: bool) -> None:
    """``python -m deployments.<kind>_worker --pool P --name N [--limit L]``: one worker in the foreground.

    ``forward_signals``: as ``prefect worker start`` does, a first SIGTERM stops the worker cleanly
    (its client closed) and a second kills it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    if forward_signals:
        from prefect.utilities.processutils import setup_signal_handlers_worker

        setup_signal_handlers_worker(os.getpid(), f"the {worker_class.type} worker", print)

    async def serve() -> None:
        async with worker_class(work_pool_name=args.pool, name=args.name, limit=args.limit) as worker:
            await worker.start()

    asyncio.run(serve())
