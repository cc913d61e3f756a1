"""Relay RabbitMQ fanout exchanges to WebSocket clients (``WS /ws/data``; docs/live-data.md).

Why this shape:
- **One consumer per exchange per API process, fanned out in memory.** The first client of an
  exchange opens an :class:`ExchangeFeed`: one channel of the API's one AMQP connection, one
  server-named, exclusive, auto-delete queue bound to the site's exchange, one consumer. Each
  message is rendered once (core/live_frames.py) and the same frame goes to every client's
  backlog (core/live_fanout.py). When the exchange's last client goes, the channel is closed
  and the broker deletes the queue (and deletes it anyway if the API dies). One queue per
  client was the first design; it made the broker deliver, and the API decode, every message
  once per client (5,000 AMQP deliveries a second for 100 clients at 50 msg/s, about a core
  of Python): p99 delay 12-37 s where 100 ms is the target (bench/ws_data.py).
- **A slow client delays nobody and sees no gap**: it has its own bounded backlog and sender;
  one that falls :data:`core.live_fanout.MAX_BACKLOG` messages (or MAX_LAG seconds) behind is
  closed with 1013 and the reason; what it got before is the feed, in order, without holes.
- **Joining happens before the handshake completes**, so a message published after a client's
  WebSocket opened reaches it (a joining client needs no broker round trip once the exchange
  has a feed).
- **The exchange is declared passively**: a name no site publishes to is refused
  (:class:`UnknownExchange`), never created; names are checked before the broker sees them.
- **Bounded memory**: at most :data:`PREFETCH` unacknowledged deliveries per exchange (a
  message is acknowledged once it is in every backlog), the backlogs' bound, and past that the
  broker keeps at most :data:`MAX_QUEUED` messages for an API that cannot keep up at all (it
  drops the oldest).
- A broker that goes away ends every client of it (1011 with a reason); the next client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from core.live_fanout import Fanout, FellBehind, Reader
from core.live_frames import to_frame

PREFETCH = 256
ACK_EVERY = 32  # < PREFETCH, so the broker never waits for an ack the feed holds back
MAX_QUEUED = 10000
MAX_CLIENTS = 1000
OPEN_TIMEOUT = 15.0
_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]{1,255}")  # AMQP's short-string names, as RabbitMQ accepts them
log = logging.getLogger("opeva.api.live")


class LiveDataError(Exception):
    """Closes the WebSocket with ``code`` and the message as its reason."""

    code = 1011


class NotConfigured(LiveDataError):
    code = 1011


class Refused(LiveDataError):
    """No token, a bad token, no exchange_name."""

    code = 1008


class UnknownExchange(LiveDataError):
    code = 1008


class BadExchangeName(LiveDataError):
    code = 1008


class TooManyClients(LiveDataError):
    code = 1013


class TooSlow(LiveDataError):
    code = 1013


class BrokerLost(LiveDataError):
    code = 1011


class _ClientGone(Exception):
    """The socket refused a frame: the client left (its own close is how the route learns it)."""


def check_exchange_name(name: str) -> str:
    if not _EXCHANGE.fullmatch(name):
        raise BadExchangeName("exchange_name must be 1-255 of A-Z a-z 0-9 _ . : -")
    if name.startswith("amq."):
        raise BadExchangeName(f"exchange {name!r} is one of the broker's own (amq.*), not a site's")
    return name


class ExchangeFeed:
    """One exchange consumed once by this API process and fanned out to its clients."""

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.fanout = Fanout()
        self.dead = False  # no client may join (closing, or its channel is gone)
        self._channel: AbstractChannel | None = None
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Future[Any] | None = None

    async def open(self, connection: AbstractConnection) -> None:
        self._channel = channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        try:
            source = await channel.get_exchange(self.exchange, ensure=True)  # passive: never creates it
        except aio_pika.exceptions.ChannelClosed as exc:
            if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
                raise UnknownExchange(f"exchange {self.exchange!r} does not exist on the broker (no site publishes to it)") from None
            raise
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True,
                                            arguments={"x-max-length": MAX_QUEUED, "x-overflow": "drop-head"})
        await queue.bind(source)
        raw = await channel.get_underlay_channel()  # aiormq's bare deliveries: less per message than aio-pika's
        inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()  # at most PREFETCH: basic.qos
        await raw.basic_consume(queue.name, inbox.put)
        self._watch = raw.closing
        self._watch.add_done_callback(self._channel_closed)
        self._pump = asyncio.create_task(self._run(raw, inbox), name=f"ws/data feed {self.exchange}")

    def _channel_closed(self, closing: asyncio.Future[Any]) -> None:
        if not closing.cancelled():
            closing.exception()  # retrieved: the reason is logged below, not by asyncio
        if not self.dead:
            log.warning("the broker closed the feed of exchange %r", self.exchange)
        self.dead = True
        self.fanout.end_all(BrokerLost("the live data broker (RabbitMQ) closed this exchange's feed; reconnect"))

    async def _run(self, raw: RawChannel, inbox: asyncio.Queue[DeliveredMessage]) -> None:
        """Render each message once, hand it to every backlog, acknowledge in runs; check lags each second."""
        unacked, checked = 0, time.monotonic()
        try:
            while True:
                try:
                    message: DeliveredMessage | None = await asyncio.wait_for(inbox.get(), 1.0)
                except TimeoutError:
                    message = None
                if message is not None:
                    self.fanout.publish(to_frame(message.body))
                    unacked += 1
                    if unacked >= ACK_EVERY or inbox.empty():  # one ack for a run of messages (multiple=True)
                        await raw.basic_ack(message.delivery_tag, multiple=True)
                        unacked = 0
                now = time.monotonic()
                if now - checked >= 1.0:
                    self.fanout.check_lag(now)
                    checked = now
        except asyncio.CancelledError:
            raise
        except Exception:
            if not self.dead:
                log.exception("the feed of exchange %r failed", self.exchange)
            self.dead = True
            self.fanout.end_all(BrokerLost("the live data relay of this exchange failed (see the API log); reconnect"))

    async def close(self) -> None:
        self.dead = True
        if self._watch is not None:
            self._watch.cancel()  # an observer: cancelling it closes nothing
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()  # cancels the consumer: the auto-delete queue goes with it


@dataclass(frozen=True)
class Subscription:
    feed: ExchangeFeed
    reader: Reader


class LiveData:
    """The API's side of the broker: one lazily opened connection, one feed per exchange with clients."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.feeds: dict[str, ExchangeFeed] = {}
        self.clients = 0
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()  # opening and closing feeds (rare); joining a live feed takes it briefly

    async def _connect(self) -> AbstractConnection:
        if not self.url:
            raise NotConfigured("live data is not configured on this API: set OPEVA_AMQP_URL (make up starts a broker of its own)")
        if self._connection is None or self._connection.is_closed:
            try:
                self._connection = await aio_pika.connect(self.url, timeout=10, client_properties={"connection_name": "opeva-api ws/data"})
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                log.warning("cannot reach the message broker: %s", exc)
                raise BrokerLost("the live data broker (RabbitMQ) does not answer; try again later") from None
        return self._connection

    async def close(self) -> None:
        for feed in list(self.feeds.values()):
            await feed.close()
        self.feeds.clear()
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()

    async def join(self, exchange: str) -> Subscription:
        """A place in ``exchange``'s feed (opened if it has none); every message published from now on reaches it."""
        check_exchange_name(exchange)
        if self.clients >= MAX_CLIENTS:
            raise TooManyClients(f"this API relays to at most {MAX_CLIENTS} live clients at once; try again later")
        self.clients += 1
        try:
            async with self._lock:
                feed = self.feeds.get(exchange)
                if feed is None or feed.dead:
                    feed = await self._open(exchange)
                    self.feeds[exchange] = feed
                return Subscription(feed, feed.fanout.join())
        except BaseException:
            self.clients -= 1
            raise

    async def _open(self, exchange: str) -> ExchangeFeed:
        feed = ExchangeFeed(exchange)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await feed.open(await self._connect())
        except BaseException as exc:
            await feed.close()
            if isinstance(exc, TimeoutError):
                raise BrokerLost("the live data broker (RabbitMQ) did not answer in time; try again later") from None
            if isinstance(exc, Exception) and not isinstance(exc, LiveDataError):
                log.error("cannot open the feed of exchange %r", exchange, exc_info=exc)
                raise BrokerLost("the live data broker refused this exchange's feed (see the API log)") from None
            raise
        return feed

    async def leave(self, sub: Subscription) -> None:
        """The client went: its backlog goes; the feed (and its queue) goes with the exchange's last client."""
        self.clients -= 1
        feed = sub.feed
        feed.fanout.leave(sub.reader)
        sub.reader.end(_ClientGone())
        if feed.fanout.readers:
            return
        async with self._lock:
            if feed.fanout.readers:  # someone joined meanwhile
                return
            if self.feeds.get(feed.exchange) is feed:
                del self.feeds[feed.exchange]
            await feed.close()

    async def stream(self, sub: Subscription, send: Callable[[str], Awaitable[None]], gone: Coroutine[Any, Any, None]) -> LiveDataError | None:
        """Send the feed's frames until the client goes (None) or a LiveDataError says why it is closed."""
        relay = asyncio.create_task(_relay(sub.reader, send))
        listen = asyncio.create_task(gone)
        try:
            await asyncio.wait({relay, listen, sub.reader.ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, listen):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if listen.done() and not listen.cancelled():
            return None
        if sub.reader.ended.done():
            reason = sub.reader.ended.result()
        elif relay.done() and not relay.cancelled():
            reason = relay.exception()
        else:
            return None
        if isinstance(reason, FellBehind):
            return TooSlow(str(reason))
        if isinstance(reason, LiveDataError):
            return reason
        if reason is None or isinstance(reason, _ClientGone):
            return None
        log.error("live data relay of %r failed", sub.feed.exchange, exc_info=reason)
        return LiveDataError("live data relay failed (see the API log)")


async def _relay(reader: Reader, send: Callable[[str], Awaitable[None]]) -> None:
    """The client's sender: its backlog, in order, each frame once the socket takes the previous one."""
    while True:
        frame = await reader.next()
        try:
            await send(frame)
        except Exception:  # noqa: BLE001 (starlette's WebSocketDisconnect, uvicorn's ClientDisconnected, a RuntimeError after close: all mean gone)
            raise _ClientGone() from None
