"""Relay a RabbitMQ fanout exchange to one WebSocket client (``WS /ws/data``; docs/live-data.md).

Why this shape:
- **One AMQP connection per API process, one channel and one queue per client.** The queue
  is server-named, exclusive and auto-delete, bound to the site's existing exchange; closing
  the client's channel deletes it (and the broker deletes it anyway if the API dies). A
  connection carries at most :data:`MAX_CLIENTS` channels (RabbitMQ's ``channel_max`` is 2047).
- **The exchange is declared passively**: a name no site publishes to is refused
  (:class:`UnknownExchange`), never created; names are checked before the broker sees them.
- **Bounded memory per client.** The API holds at most :data:`PREFETCH` unacknowledged
  messages per client (``basic.qos``); a message is acknowledged once its frame is handed to
  the WebSocket, whose send waits while the socket's write buffer is full. Past that the
  broker keeps at most :data:`MAX_QUEUED` messages per client queue and **drops the oldest**
  (``x-overflow: drop-head``): a slow client stays live and in order, with gaps, and the API's
  memory does not grow. A client whose socket accepts nothing for :data:`SEND_TIMEOUT` seconds
  is closed (1013, "try again later").
- A broker that goes away closes every client (1011 with a reason); the next client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from core.live_frames import FrameCache

PREFETCH = 64
ACK_EVERY = 16  # < PREFETCH, so the broker never waits for an ack the relay holds back
MAX_QUEUED = 1000
SEND_TIMEOUT = 30.0
MAX_CLIENTS = 1000
_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]{1,255}")  # AMQP's short-string names, as RabbitMQ accepts them
log = logging.getLogger("opeva.api.live")


@dataclass(frozen=True)
class Feed:
    """One client's deliveries (at most PREFETCH) and the channel they are acknowledged on."""

    inbox: asyncio.Queue[DeliveredMessage]
    channel: RawChannel


class LiveDataError(Exception):
    """Closes the WebSocket with ``code`` and the message as its reason."""

    code = 1011


class NotConfigured(LiveDataError):
    code = 1011


class UnknownExchange(LiveDataError):
    code = 1008


class BadExchangeName(LiveDataError):
    code = 1008


class TooManyClients(LiveDataError):
    code = 1013


class BrokerLost(LiveDataError):
    code = 1011


def check_exchange_name(name: str) -> str:
    if not _EXCHANGE.fullmatch(name):
        raise BadExchangeName("exchange_name must be 1-255 of A-Z a-z 0-9 _ . : -")
    if name.startswith("amq."):
        raise BadExchangeName(f"exchange {name!r} is one of the broker's own (amq.*), not a site's")
    return name


class LiveData:
    """The API's side of the broker: one lazily opened connection, shared by all clients."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames = FrameCache()
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()
        self.clients = 0

    async def _connect(self) -> AbstractConnection:
        if not self.url:
            raise NotConfigured("live data is not configured on this API: set OPEVA_AMQP_URL (make up starts a broker of its own)")
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                try:
                    self._connection = await aio_pika.connect(self.url, timeout=10, client_properties={"connection_name": "opeva-api ws/data"})
                except (OSError, asyncio.TimeoutError, aiormq.exceptions.AMQPError) as exc:
                    log.warning("cannot reach the message broker: %s", exc)
                    raise BrokerLost("the live data broker (RabbitMQ) does not answer; try again later") from None
            return self._connection

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()

    @contextlib.asynccontextmanager
    async def subscription(self, exchange: str) -> AsyncIterator[Feed]:
        """A bounded queue of the exchange's messages for one client; its AMQP queue lives as long as the block."""
        check_exchange_name(exchange)
        if self.clients >= MAX_CLIENTS:
            raise TooManyClients(f"this API relays to at most {MAX_CLIENTS} live clients at once; try again later")
        self.clients += 1
        channel: AbstractChannel | None = None
        try:
            connection = await self._connect()
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=PREFETCH)
            try:
                source = await channel.get_exchange(exchange, ensure=True)  # passive: never creates it
            except aio_pika.exceptions.ChannelClosed as exc:
                if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
                    raise UnknownExchange(f"exchange {exchange!r} does not exist on the broker (no site publishes to it)") from None
                raise
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True,
                                                arguments={"x-max-length": MAX_QUEUED, "x-overflow": "drop-head"})
            await queue.bind(source)
            # aiormq's channel under aio-pika's: its bare deliveries cost less per message than
            # aio-pika's IncomingMessage, and every client receives every message (see the bench)
            raw = await channel.get_underlay_channel()
            inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue(maxsize=PREFETCH)  # never full: unacked <= prefetch
            await raw.basic_consume(queue.name, inbox.put)
            yield Feed(inbox, raw)
        finally:
            self.clients -= 1
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()  # cancels the consumer: the auto-delete queue goes with it

    async def relay(self, exchange: str, send: Callable[[str], Awaitable[None]]) -> None:
        """Send each message of ``exchange`` as a frame, in order, until cancelled (the client went)
        or a LiveDataError says why not."""
        async with self.subscription(exchange) as feed:
            unacked = 0
            while True:
                try:
                    message = await asyncio.wait_for(feed.inbox.get(), 5)
                except asyncio.TimeoutError:
                    self._check_connection()
                    if feed.channel.is_closed:  # e.g. an operator deleted the client's queue
                        raise BrokerLost("the broker closed this client's subscription") from None
                    continue
                try:
                    await asyncio.wait_for(send(self.frames.frame(message.body)), SEND_TIMEOUT)
                except asyncio.TimeoutError:
                    raise TooManyClients(f"the client accepted no data for {SEND_TIMEOUT:.0f} s: closed") from None
                unacked += 1
                if unacked >= ACK_EVERY or feed.inbox.empty():  # one ack for a run of messages (multiple=True)
                    await feed.channel.basic_ack(message.delivery_tag, multiple=True)
                    unacked = 0

    def _check_connection(self) -> None:
        if self._connection is None or self._connection.is_closed:
            raise BrokerLost("the connection to the live data broker (RabbitMQ) closed")
