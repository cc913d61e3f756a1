"""WS /ws/data under load: N WebSocket clients on one fanout exchange, phases at rising msg/s.

Prints, in one run, one row per path with clients, msg/s, frames delivered/expected, whether
every client got every message in order, the publish-to-receive delay (p50, p95, p99, max) and
the CPU each side used (% of one core over the phase):
- floor "clients alone": the same N clients fed by a bare WebSocket broadcaster (bench/_ws_broadcast.py:
  no broker, no API) at the top rate: what the bench's own clients and uvicorn's WebSocket
  layer cost on this machine (on 2 cores the clients compete with the API for CPU);
- floor "per-client queues" (``--per-client-queues``): N AMQP consumers, one queue each, in this
  process: what the first design (one queue per client) cost before any WebSocket;
- the relay: N clients through the API (``WS /ws/data``), one phase per rate, the same clients;
then the API's RSS before the clients, with them, after each phase and after they left, and the
targets (issue 24: 100 clients, 50 msg/s, every message in order, p99 <= 100 ms, RSS flat).

Everything is loopback and bounded: a private broker, a Prefect server and the API on free
ports, ``--clients`` (<= 500), up to 5 rates (<= 500 msg/s) for ``--seconds`` (<= 120) each.
The publisher is its own process (each message carries ``time.time()``).

Usage: python bench/ws_data.py [--clients 100] [--rates 10,25,50] [--seconds 10] [--per-client-queues]
       python bench/ws_data.py --ci      (20 clients, 50 msg/s, 5 s: a CI-sized run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import pct  # noqa: E402
from deployments.platform import Platform, free_port  # noqa: E402
from deployments.rabbitmq_server import start_rabbitmq  # noqa: E402

EXCHANGE = "bench-site"
PAD = "x" * 300  # a site reading is a few hundred bytes
TICK = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int, tree: bool = False) -> float:
    """utime + stime of ``pid`` (and of its descendants: the broker's beam runs under a wrapper)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (tree or int(entry.name) == pid):
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    parent = {p: int(f[1]) for p, f in stats.items()}

    def inside(p: int) -> bool:
        while p > 1:
            if p == pid:
                return True
            p = parent.get(p, 0)
        return False

    return sum(int(f[11]) + int(f[12]) for p, f in stats.items() if inside(p)) / TICK


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

    def delivered(self) -> int:
        return sum(map(len, self.seqs))

    def in_order(self, total: int) -> bool:
        return all(s == list(range(self.first, self.first + total)) for s in self.seqs)


@dataclass
class Phase:
    name: str
    clients: int
    rate: int
    total: int  # messages published
    tally: Tally
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core over the phase

    def line(self) -> str:
        ms = [d * 1000 for d in self.tally.delays] or [float("nan")]
        ok = "yes" if self.tally.in_order(self.total) else "NO"
        cpu = " | ".join(f"{self.cpu[k]:>6.0f}" if k in self.cpu else f"{'-':>6}" for k in ("clients", "server", "broker"))
        return (f"| {self.name:<32} | {self.clients:>7} | {self.rate:>5} | {self.tally.delivered():>7}/{self.clients * self.total:<7} | {ok:^8} | "
                f"{pct(ms, .5):>8.1f} | {pct(ms, .95):>8.1f} | {pct(ms, .99):>8.1f} | {max(ms):>8.1f} | {cpu} |")


HEADER = (f"| {'path':<32} | clients | msg/s | delivered/expected | in order | p50 ms   | p95 ms   | p99 ms   | max ms   | CPU % of one core:      |\n"
          f"| {'':<32} |         |       |                    |          |          |          |          |          | client | server | broker |\n"
          f"|{'-' * 34}|---------|-------|--------------------|----------|----------|----------|----------|----------|--------|--------|--------|")


async def run_phase(phase: Phase, current: list[Tally], publish: Callable[[], Awaitable[None]], servers: dict[str, tuple[int, bool]]) -> None:
    """Publish, wait until every client has every message (or 60 s more), note CPU per side."""
    current[0] = phase.tally
    before = {k: cpu_seconds(pid, tree) for k, (pid, tree) in servers.items()}
    t0, c0 = time.monotonic(), time.process_time()
    await publish()
    deadline = time.monotonic() + 60
    while phase.tally.delivered() < phase.clients * phase.total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    phase.wall = time.monotonic() - t0
    phase.cpu["clients"] = (time.process_time() - c0) / phase.wall * 100
    for k, (pid, tree) in servers.items():
        phase.cpu[k] = (cpu_seconds(pid, tree) - before[k]) / phase.wall * 100


async def open_clients(url: str, clients: int, current: list[Tally]) -> tuple[list, list[asyncio.Task]]:
    from websockets.asyncio.client import connect

    sockets = [await connect(url, max_queue=None) for _ in range(clients)]

    async def reader(c: int, ws) -> None:
        async for text in ws:
            current[0].got(c, text)

    return sockets, [asyncio.create_task(reader(c, ws)) for c, ws in enumerate(sockets)]


async def close_clients(sockets: list, readers: list[asyncio.Task]) -> None:
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()


async def clients_alone(clients: int, rate: int, seconds: int) -> Phase:
    """The floor: the same clients fed by a bare broadcaster (its own uvicorn process)."""
    from websockets.asyncio.client import connect

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "_ws_broadcast:app", "--app-dir", str(Path(__file__).parent),
                               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.05)
        current = [Tally(clients)]
        sockets, readers = await open_clients(f"ws://127.0.0.1:{port}/ws", clients, current)
        phase = Phase("floor: clients alone (no broker)", clients, rate, rate * seconds, Tally(clients))

        async def publish() -> None:
            async with connect(f"ws://127.0.0.1:{port}/go?rate={rate}&count={rate * seconds}&start=0") as go:
                await go.recv()

        await run_phase(phase, current, publish, {"server": (server.pid, False)})
        await close_clients(sockets, readers)
        return phase
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def per_client_queues(url: str, clients: int, rate: int, seconds: int, broker_pid: int) -> Phase:
    """The first design's cost: one queue and consumer per client, here in this process, no WebSocket."""
    import aio_pika

    current = [Tally(clients)]
    phase = Phase("floor: one AMQP queue per client", clients, rate, rate * seconds, Tally(clients))
    async with await aio_pika.connect(url) as conn:
        for c in range(clients):
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=64)
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
            await queue.bind(await channel.get_exchange(EXCHANGE, ensure=True))
            raw = await channel.get_underlay_channel()

            async def on_message(message, c=c, raw=raw) -> None:
                current[0].got(c, message.body)
                await raw.basic_ack(message.delivery_tag)

            await raw.basic_consume(queue.name, on_message)
        await run_phase(phase, current, lambda: asyncio.to_thread(publish_phase, url, rate, rate * seconds, 0), {"broker": (broker_pid, True)})
    return phase


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def relay(platform: Platform, api_pid: int, broker_pid: int, url: str, clients: int, rates: list[int], seconds: int, broker) -> tuple[list[Phase], list[tuple[str, float]]]:
    """The same clients through every phase: one phase per rate."""
    rss = [("before the clients", rss_mb(api_pid))]
    base = len(broker.queues())
    current = [Tally(clients)]
    sockets, readers = await open_clients(f"{platform.api_url.replace('http', 'ws')}/ws/data?exchange_name={EXCHANGE}", clients, current)
    rss.append((f"{clients} clients connected", rss_mb(api_pid)))
    phases, first = [], 0
    for rate in rates:
        count = rate * seconds
        phase = Phase("WS /ws/data via the API", clients, rate, count, Tally(clients, first))
        await run_phase(phase, current, lambda rate=rate, count=count, first=first: asyncio.to_thread(publish_phase, url, rate, count, first),
                        {"server": (api_pid, False), "broker": (broker_pid, True)})
        phases.append(phase)
        rss.append((f"after {rate} msg/s ({count} msg each)", rss_mb(api_pid)))
        first += count
    queues_with_clients = len(broker.queues()) - base
    await close_clients(sockets, readers)
    deadline = time.monotonic() + 60
    while len(broker.queues()) > base and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    rss.append((f"clients gone ({queues_with_clients} queue(s) -> {len(broker.queues()) - base})", rss_mb(api_pid)))
    return phases, rss


def start(home: Path) -> tuple[Platform, object]:
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
    return p, rabbit


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def report(clients: int, rates: list[int], seconds: int, phases: list[Phase], rss: list[tuple[str, float]], load: list[float]) -> None:
    print(f"\n{clients} clients on one exchange, phases of {seconds} s; {os.cpu_count()} cores, "
          f"load average {min(load):.1f}-{max(load):.1f} during the run\n")
    print(HEADER)
    for phase in phases:
        print(phase.line())
    print(f"\n| {'API RSS':<40} | {'MB':>7} |\n|{'-' * 42}|---------|")
    for name, mb in rss:
        print(f"| {name:<40} | {mb:>7.1f} |")
    top = phases[-1]
    p99 = pct([d * 1000 for d in top.tally.delays] or [float("nan")], .99)
    grew = rss[-2][1] - rss[1][1]
    every = top.tally.in_order(top.total)
    print(f"\ntargets ({clients} clients, {top.rate} msg/s; issue 24 asks 100 clients at 50 msg/s): "
          f"every message to every client in order: {'met' if every else 'MISSED'}; "
          f"p99 <= 100 ms: {'met' if p99 <= 100 else 'MISSED'} ({p99:.1f} ms); "
          f"API RSS flat (connected -> after the last phase, <= 5 MB): {'met' if abs(grew) <= 5 else 'MISSED'} ({grew:+.1f} MB)")


async def main(clients: int, rates: list[int], seconds: int, with_queues: bool) -> int:
    home = Path(tempfile.mkdtemp(prefix="opeva-bench-ws-"))
    say(f"starting a broker, Prefect, MongoDB-wire server and the API in {home}...")
    platform, broker = start(home)
    load: list[float] = []
    try:
        import aio_pika

        async with await aio_pika.connect(broker.url) as conn:
            await (await conn.channel()).declare_exchange(EXCHANGE, aio_pika.ExchangeType.FANOUT)
        api_pid = next(s.proc.pid for s in platform.services if s.name == "api")
        broker_pid = next(s.proc.pid for s in platform.services if s.name == "rabbitmq")
        phases = []
        say(f"floor: {clients} WebSocket clients fed by a bare broadcaster, {rates[-1]} msg/s...")
        phases.append(await clients_alone(clients, rates[-1], seconds))
        load.append(os.getloadavg()[0])
        if with_queues:
            say(f"floor: {clients} AMQP consumers, one queue each, {rates[-1]} msg/s...")
            phases.append(await per_client_queues(broker.url, clients, rates[-1], seconds, broker_pid))
            load.append(os.getloadavg()[0])
        say(f"relay: {clients} WebSocket clients through the API, {rates} msg/s...")
        via, rss = await relay(platform, api_pid, broker_pid, broker.url, clients, rates, seconds, broker)
        phases += via
        load.append(os.getloadavg()[0])
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)
    report(clients, rates, seconds, phases, rss, load)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, choices=range(1, 501), metavar="1..500")
    parser.add_argument("--rates", default="10,25,50", help="msg/s of each phase, each 1..500 (the last is the target's)")
    parser.add_argument("--seconds", type=int, default=10, choices=range(1, 121), metavar="1..120")
    parser.add_argument("--per-client-queues", action="store_true", help="also measure the first design's floor (one AMQP queue per client)")
    parser.add_argument("--ci", action="store_true", help="a CI-sized run: 20 clients, 50 msg/s, 5 s")
    args = parser.parse_args()
    if args.ci:
        args.clients, args.rates, args.seconds = 20, "50", 5
    rates = [int(r) for r in args.rates.split(",")]
    if not rates or not all(1 <= r <= 500 for r in rates) or len(rates) > 5:
        parser.error("--rates: 1 to 5 rates, each 1..500")
    sys.exit(asyncio.run(main(args.clients, rates, args.seconds, args.per_client_queues)))
