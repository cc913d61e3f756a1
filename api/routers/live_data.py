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
from api.usecases.live_data import LiveData, LiveDataError, Refused

router = APIRouter(tags=["live data"])
log = logging.getLogger("opeva.api.live")
CLOSE_WAIT = 30.0  # seconds a close frame may wait for a socket that takes nothing


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
    live: LiveData = websocket.app.state.live
    problem = _token_problem(websocket, access_token) or ("exchange_name is required: /ws/data?exchange_name=<exchange>" if not exchange_name else None)
    refusal: LiveDataError | None = Refused(problem) if problem else None
    sub = None
    if refusal is None:
        try:
            sub = await live.join(exchange_name)  # before the handshake completes: nothing published after it is missed
        except LiveDataError as exc:
            refusal = exc
    await websocket.accept()
    if sub is None:
        return await _close(websocket, refusal)
    try:
        error = await live.stream(sub, websocket.send_text, _until_gone(websocket))
    finally:
        await live.leave(sub)
    if error is not None:
        await _close(websocket, error)


async def _close(websocket: WebSocket, error: LiveDataError | None) -> None:
    """Close with the error's code and reason; a socket that takes nothing gets CLOSE_WAIT seconds to take the close frame."""
    code, reason = (error.code, str(error)) if error is not None else (1000, "")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=_reason(reason)), CLOSE_WAIT)
