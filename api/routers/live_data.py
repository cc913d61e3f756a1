"""``WS /ws/data?exchange_name=<x>``: live site data, relayed from a RabbitMQ fanout exchange.

As upstream's backend (energaize_ui's live community charts open it): each message of the
exchange arrives as one JSON text frame (a body that is not JSON as ``{"raw": "<text>"}``).
Why the connection is accepted before it is refused (code 1008, a reason): a browser cannot
read why a handshake failed, but it can read a close frame's reason. The Origin allow-list
(OPEVA_CORS_ORIGINS) is applied to the handshake itself by api/cors.py; with tokens on, a
client sends ``Authorization: Bearer <token>`` or, from a browser (which cannot set headers
on a WebSocket), ``?access_token=<token>``. The work is in api/usecases/live_data.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from api.errors import ApiError
from api.usecases.live_data import LiveData, LiveDataError

router = APIRouter(tags=["live data"])
log = logging.getLogger("opeva.api.live")
POLICY = 1008


def _reason(text: str) -> str:
    """A close frame's reason is at most 123 bytes of UTF-8."""
    data = text.encode("utf-8")[:120]
    return data.decode("utf-8", errors="ignore")


def _token_problem(websocket: WebSocket, access_token: str) -> str | None:
    auth = websocket.app.state.auth
    if not auth.enabled:
        return None
    header = websocket.headers.get("authorization") or (f"Bearer {access_token}" if access_token else None)
    try:
        auth.authenticate(header)
    except ApiError as exc:
        return f"{exc.detail} (or ?access_token=<token>)"
    return None


async def _until_gone(websocket: WebSocket) -> None:
    """Read (and drop) what the client sends: the read is how its leaving is seen."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


@router.websocket("/ws/data", name="live_data")
async def live_data(
    websocket: WebSocket,
    exchange_name: str = Query("", max_length=1000, description="The site's RabbitMQ fanout exchange"),
    access_token: str = Query("", max_length=1000, description="The bearer token, for browsers (tokens on)"),
) -> None:
    await websocket.accept()
    problem = _token_problem(websocket, access_token) or ("exchange_name is required: /ws/data?exchange_name=<exchange>" if not exchange_name else None)
    if problem:
        return await websocket.close(code=POLICY, reason=_reason(problem))
    live: LiveData = websocket.app.state.live
    relay = asyncio.create_task(live.relay(exchange_name, websocket.send_text))
    listen = asyncio.create_task(_until_gone(websocket))
    done, pending = await asyncio.wait({relay, listen}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task  # the relay's clean-up (channel and queue closed) runs here
    if relay not in done or relay.cancelled():
        return
    exc = relay.exception()
    if exc is None:
        return
    if isinstance(exc, LiveDataError):
        code, reason = exc.code, str(exc)
    else:
        log.error("live data relay for %r failed", exchange_name, exc_info=exc)
        code, reason = 1011, "live data relay failed (see the API log)"
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=_reason(reason))
