"""WS /ws/data under load: N WebSocket clients on one fanout exchange, R messages/s published.

Prints, in one run:
- the floor: the same N consumers reading the broker directly over AMQP (one queue each,
  as the API makes them): what RabbitMQ itself costs on this machine;
- the relay: N WebSocket clients through the API;
for each, whether every client got every message in order, and the publish-to-receive delay
(p50, p99, max; target p99 <= 100 ms through the relay), and the API's RSS before the
clients, with them connected, after each publishing phase and after they left (target: flat).

Everything is loopback and bounded: a private broker, a Prefect server and the API on free
ports, ``--clients`` (<= 500) clients, ``--rate`` (<= 500) msg/s for ``--seconds`` (<= 120) per
phase, two phases. The publisher is its own process (messages carry ``time.time()``), so
publishing does not share the clients' event loop.

Usage: python bench/ws_data.py [--clients 100] [--rate 50] [--seconds 15]
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
    def __init__(self, clients: int) -> None:
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
        return all(s == list(range(total)) for s in self.seqs)


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

            async def on_message(message, c=c) -> None:  # noqa: ANN001
                tally.got(c, message.body)
                await message.ack()

            await queue.consume(on_message)
        total = rate * seconds
        await asyncio.to_thread(publish_phase, url, rate, total, 0)
        await wait_complete(tally, total)
    return tally


async def relay(api: str, api_pid: int, url: str, clients: int, rate: int, seconds: int, broker) -> tuple[Tally, list[tuple[str, float]]]:  # noqa: ANN001
    from websockets.asyncio.client import connect

    tally = Tally(clients)
    rss = [("before the clients", rss_mb(api_pid))]
    base = len(broker.queues())
    sockets = [await connect(f"{api.replace('http', 'ws')}/ws/data?exchange_name={EXCHANGE}", max_queue=None) for _ in range(clients)]
    await queues_reach(broker, lambda n: n >= base + clients, "every client's queue")

    async def reader(c: int, ws) -> None:  # noqa: ANN001
        async for text in ws:
            tally.got(c, text)

    readers = [asyncio.create_task(reader(c, ws)) for c, ws in enumerate(sockets)]
    rss.append((f"{clients} clients connected", rss_mb(api_pid)))
    per_phase = rate * seconds
    for phase in range(2):
        await asyncio.to_thread(publish_phase, url, rate, per_phase, phase * per_phase)
        await wait_complete(tally, (phase + 1) * per_phase)
        rss.append((f"after phase {phase + 1} ({per_phase} msg each)", rss_mb(api_pid)))
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()
    await queues_reach(broker, lambda n: n <= base, "the clients' queues deleted")
    rss.append(("clients gone (queues deleted)", rss_mb(api_pid)))
    return tally, rss


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
    return f"| {name:<34} | {len(tally.seqs):>7} | {len(ms):>8} | {ok:^14} | {pct(ms, .5):>7.1f} | {pct(ms, .99):>7.1f} | {max(ms):>7.1f} |"


async def main(clients: int, rate: int, seconds: int) -> int:
    home = Path(tempfile.mkdtemp(prefix="opeva-bench-ws-"))
    say(f"starting a broker, Prefect, MongoDB-wire server and the API in {home}...")
    platform, broker, url = start(home)
    try:
        import aio_pika

        async with await aio_pika.connect(url) as conn:
            await (await conn.channel()).declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT)
        api_pid = next(s.proc.pid for s in platform.services if s.name == "api")
        say("floor: AMQP consumers...")
        base = await floor(url, clients, rate, seconds)
        say("relay: WebSocket clients through the API...")
        via, rss = await relay(platform.api_url, api_pid, url, clients, rate, seconds, broker)
    finally:
        platform.stop()
    print(f"\n{clients} clients, {rate} msg/s, 2 phases of {seconds} s ({os.cpu_count()} cores)\n")
    print(f"| {'path':<34} | clients | messages | every, in order | p50 ms | p99 ms | max ms |")
    print(f"|{'-' * 36}|---------|----------|----------------|--------|--------|--------|")
    print(line("floor: AMQP consumers, no API", base, rate * seconds))
    print(line("WS /ws/data through the API", via, 2 * rate * seconds))
    print(f"\n| {'API RSS':<34} | {'MB':>7} |\n|{'-' * 36}|---------|")
    for name, mb in rss:
        print(f"| {name:<34} | {mb:>7.1f} |")
    p99 = pct([d * 1000 for d in via.delays], .99)
    growth = rss[-2][1] - rss[1][1]
    print(f"\ntargets: every message in order: {'met' if via.in_order(2 * rate * seconds) else 'MISSED'}; "
          f"p99 <= 100 ms: {'met' if p99 <= 100 else 'MISSED'} ({p99:.1f}); "
          f"RSS flat between phase 1 and 2 (< 10 MB): {'met' if abs(rss[-2][1] - rss[-3][1]) < 10 else 'MISSED'} "
          f"(connected -> after phase 2: {growth:+.1f} MB)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, choices=range(1, 501), metavar="1..500")
    parser.add_argument("--rate", type=int, default=50, choices=range(1, 501), metavar="1..500")
    parser.add_argument("--seconds", type=int, default=15, choices=range(1, 121), metavar="1..120")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.clients, args.rate, args.seconds)))
