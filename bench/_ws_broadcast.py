"""The client-side floor of bench/ws_data.py: a bare Starlette WebSocket broadcaster, no broker, no API.

Why: on 2 cores the bench's own WebSocket clients (Python ``websockets``, per-message deflate as a
browser negotiates it) take CPU too; this server sends the same stamped frames to the same
clients with nothing in between, so the delay it shows is what the clients and uvicorn's
WebSocket layer cost by themselves. Run by ``python -m uvicorn _ws_broadcast:app --app-dir bench``.
``/ws`` subscribes; ``/go?rate=&count=&start=`` broadcasts and answers its own CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

PAD = "x" * 300
backlogs: set[asyncio.Queue[str]] = set()


async def subscriber(websocket: WebSocket) -> None:
    await websocket.accept()
    backlog: asyncio.Queue[str] = asyncio.Queue()
    backlogs.add(backlog)

    async def send() -> None:
        while True:
            await websocket.send_text(await backlog.get())

    async def until_gone() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(send()), asyncio.create_task(until_gone())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        backlogs.discard(backlog)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def go(websocket: WebSocket) -> None:
    await websocket.accept()
    rate, count, start = (int(websocket.query_params[k]) for k in ("rate", "count", "start"))
    t0, cpu = time.monotonic(), time.process_time()
    for i in range(count):
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        frame = json.dumps({"seq": start + i, "sent": time.time(), "pad": PAD})
        for backlog in backlogs:
            backlog.put_nowait(frame)
    while any(not b.empty() for b in backlogs):
        await asyncio.sleep(0.05)
    await websocket.send_text(json.dumps({"cpu": time.process_time() - cpu}))
    await websocket.close()


app = Starlette(routes=[WebSocketRoute("/ws", subscriber), WebSocketRoute("/go", go)])
