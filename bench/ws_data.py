"""WS /ws/data under load: N WebSocket clients on one fanout exchange, phases at rising msg/s.

Prints, in one run:
- the floor: the same N consumers reading the broker directly over AMQP in this process (one
  queue each, bare aiormq deliveries, as the API makes them): what RabbitMQ plus a Python AMQP
  consumer cost on this machine, at the top rate;
- the relay: N WebSocket clients through the API, one phase per rate (same clients);
for each, whether every client got every message in order, and the publish-to-receive delay
(p50, p99, max; target p99 <= 100 ms at 50 msg/s with 100 clients), and the API's RSS before
the clients, with them connected, after each phase and after they left (target: flat).

Everything is loopback and bounded: a private broker, a Prefect server and the API on free
ports, ``--clients`` (<= 500) clients, up to 5 rates (<= 500 msg/s) for ``--seconds`` (<= 120)
each. The publisher is its own process (messages carry ``time.time()``), so publishing does
not share the clients' event loop.

Usage: python bench/ws_data.py [--clients 100] [--rates 10,25,50] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import pct  # noqa: E402
from deployments.platform import Platform, free_port  # noqa: E402
from deployments.rabbitmq_server import start_rabbitmq  # noqa: E402

EXCHANGE = "bench-site"
PAD = "x" * 300  # a site reading is a few hundred bytes


def publisher(url: str, rate: int, count: int, start_seq: int) -> None:
    """Its own process: ``count`` messages at ``rate``/s, each stamped when sent."""
    import aio_pika

    async def run() -> None:
        async with await aio_pika.connect(url) as conn:
            ex = await (await conn.channel()).get_exchange(EXCHANGE, ensure=True)
            t0 = time.monotonic()
            for i in range(count):
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                body = json.dumps({"seq": start_seq + i, "sent": time.time(), "pad": PAD}).encode()
                await ex.publish(aio_pika.Message(body), routing_key="")

    asyncio.run(run())


def publish_phase(url: str, rate: int, count: int, start_seq: int) -> None:
    proc = multiprocessing.get_context("spawn").Process(target=publisher, args=(url, rate, count, start_seq))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"publisher failed ({proc.exitcode})")


class Tally:
    """What each client received in one phase (sequence numbers from ``first``)."""

    def __init__(self, clients: int, first: int = 0) -> None:
        self.first = first
        self.seqs: list[list[int]] = [[] for _ in range(clients)]
        self.delays: list[float] = []

    def got(self, client: int, text: str | bytes) -> None:
        now = time.time()
        data = json.loads(text)
        self.seqs[client].append(data["seq"])
        self.delays.append(now - data["sent"])

    def complete(self, total: int) -> bool:
        return all(len(s) >= total for s in self.seqs)

    def in_order(self, total: int) -> bool:
        return all(s == list(range(self.first, self.first + total)) for s in self.seqs)


async def wait_complete(tally: Tally, total: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not tally.complete(total) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def queues_reach(broker, ok, what: str, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not ok(n := len(await asyncio.to_thread(broker.queues))):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what} ({n} queues on the broker)")
        await asyncio.sleep(0.2)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """The API's resident memory (uvicorn runs in the child itself)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def floor(url: str, clients: int, rate: int, seconds: int) -> Tally:
    import aio_pika

    tally = Tally(clients)
    async with await aio_pika.connect(url) as conn:
        for c in range(clients):
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=64)
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
            await queue.bind(await channel.get_exchange(EXCHANGE, ensure=True))

            raw = await channel.get_underlay_channel()

            async def on_message(message, c=c, raw=raw) -> None:  # noqa: ANN001
                tally.got(c, message.body)
                await raw.basic_ack(message.delivery_tag)

            await raw.basic_consume(queue.name, on_message)
        total = rate * seconds
        await asyncio.to_thread(publish_phase, url, rate, total, 0)
        await wait_complete(tally, total)
    return tally


async def relay(api: str, api_pid: int, url: str, clients: int, rates: list[int], seconds: int, broker) -> tuple[list[Tally], list[tuple[str, float]]]:  # noqa: ANN001
    """The same clients through every phase: one phase per rate."""
    from websockets.asyncio.client import connect

    rss = [("before the clients", rss_mb(api_pid))]
    base = len(broker.queues())
    sockets = [await connect(f"{api.replace('http', 'ws')}/ws/data?exchange_name={EXCHANGE}", max_queue=None) for _ in range(clients)]
    await queues_reach(broker, lambda n: n >= base + clients, "every client's queue")
    tallies: list[Tally] = []
    current: list[Tally] = [Tally(clients)]

    async def reader(c: int, ws) -> None:  # noqa: ANN001
        async for text in ws:
            current[0].got(c, text)

    readers = [asyncio.create_task(reader(c, ws)) for c, ws in enumerate(sockets)]
    rss.append((f"{clients} clients connected", rss_mb(api_pid)))
    first = 0
    for rate in rates:
        count = rate * seconds
        current[0] = Tally(clients, first)
        await asyncio.to_thread(publish_phase, url, rate, count, first)
        await wait_complete(current[0], count)
        tallies.append(current[0])
        rss.append((f"after {rate} msg/s ({count} msg each)", rss_mb(api_pid)))
        first += count
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()
    await queues_reach(broker, lambda n: n <= base, "the clients' queues deleted")
    rss.append(("clients gone (queues deleted)", rss_mb(api_pid)))
    return tallies, rss


def start(home: Path) -> tuple[Platform, object, str]:
    """Broker, Prefect (process pools: no Docker needed), MongoDB-wire server, the API."""
    p = Platform(home=home, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=home / "data")
    hosts = home / "hosts.yaml"
    hosts.write_text(f"hosts:\n  - name: local\n    volumes: ['{p.data_dir}:{p.data_dir}']\n")
    os.environ.update({"OPEVA_MLFLOW": "0", "OPEVA_HOSTS_FILE": str(hosts)})
    rabbit = start_rabbitmq(p)
    p.start_prefect_server()
    p.start_mongo()
    p.setup_pools(hosts, docker=False)
    p.start_api(OPEVA_AMQP_URL=rabbit.url, OPEVA_HOSTS_FILE=str(hosts))
    return p, rabbit, rabbit.url


def line(name: str, tally: Tally, total: int) -> str:
    ms = [d * 1000 for d in tally.delays]
    ok = "yes" if tally.in_order(total) else "NO"
    return f"| {name:<34} | {len(tally.seqs):>7} | {len(ms):>8} | {ok:^15} | {pct(ms, .5):>8.1f} | {pct(ms, .99):>8.1f} | {max(ms):>8.1f} |"


async def main(clients: int, rates: list[int], seconds: int) -> int:
    home = Path(tempfile.mkdtemp(prefix="opeva-bench-ws-"))
    say(f"starting a broker, Prefect, MongoDB-wire server and the API in {home}...")
    platform, broker, url = start(home)
    try:
        import aio_pika

        async with await aio_pika.connect(url) as conn:
            await (await conn.channel()).declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT)
        api_pid = next(s.proc.pid for s in platform.services if s.name == "api")
        say(f"floor: {clients} AMQP consumers in this process, {rates[-1]} msg/s...")
        base = await floor(url, clients, rates[-1], seconds)
        say(f"relay: {clients} WebSocket clients through the API, {rates} msg/s...")
        via, rss = await relay(platform.api_url, api_pid, url, clients, rates, seconds, broker)
    finally:
        platform.stop()
    print(f"\n{clients} clients on one exchange, phases of {seconds} s; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
    print(f"| {'path':<34} | clients | messages | every, in order | p50 ms   | p99 ms   | max ms   |")
    print(f"|{'-' * 36}|---------|----------|-----------------|----------|----------|----------|")
    print(line(f"floor: AMQP consumers, {rates[-1]} msg/s", base, rates[-1] * seconds))
    for rate, tally in zip(rates, via):
        print(line(f"WS /ws/data via the API, {rate} msg/s", tally, rate * seconds))
    print(f"\n| {'API RSS':<34} | {'MB':>7} |\n|{'-' * 36}|---------|")
    for name, mb in rss:
        print(f"| {name:<34} | {mb:>7.1f} |")
    top = via[-1]
    p99 = pct([d * 1000 for d in top.delays], .99)
    print(f"\ntargets at {rates[-1]} msg/s: every message in order: {'met' if top.in_order(rates[-1] * seconds) else 'MISSED'}; "
          f"p99 <= 100 ms: {'met' if p99 <= 100 else 'MISSED'} ({p99:.1f} ms); "
          f"RSS connected -> last phase: {rss[-2][1] - rss[1][1]:+.1f} MB")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, choices=range(1, 501), metavar="1..500")
    parser.add_argument("--rates", default="10,25,50", help="msg/s of each phase, each 1..500 (the last is the target's)")
    parser.add_argument("--seconds", type=int, default=10, choices=range(1, 121), metavar="1..120")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    if not rates or not all(1 <= r <= 500 for r in rates) or len(rates) > 5:
        parser.error("--rates: 1 to 5 rates, each 1..500")
    sys.exit(asyncio.run(main(args.clients, rates, args.seconds)))
