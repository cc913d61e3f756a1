"""``WS /ws/data``: a real RabbitMQ (deployments/rabbitmq_server.py), the real API over real
HTTP/WebSocket, real publishers, and a real browser (Debian's chromium) opening the socket."""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import subprocess
import tempfile
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import aio_pika
import httpx
import pymongo
import pytest
from bson import json_util
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from deployments.platform import Platform, free_port
from deployments.rabbitmq_server import LocalRabbit, start_rabbitmq
from helpers import wait_for

PAGE_PORT = free_port()
ALLOWED = f"http://127.0.0.1:{PAGE_PORT}"
FOREIGN = f"http://localhost:{PAGE_PORT}"  # the same server under another name: another origin


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalRabbit]:
    home = Path(tempfile.mkdtemp(prefix="opeva-rabbit-"))
    services = Platform(home=home, prefect_port=0, mongo_port=0, api_port=0, data_dir=home / "data")
    try:
        yield start_rabbitmq(services)
    finally:
        services.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def api_platform(platform: Platform, broker: LocalRabbit) -> Iterator[Platform]:
    """An API of the session's platform with the broker's URL and an Origin allow-list."""
    home = Path(tempfile.mkdtemp(prefix="opeva-live-api-"))
    own = Platform(home=home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port, api_port=free_port(), data_dir=platform.data_dir)
    try:
        own.start_api(OPEVA_AMQP_URL=broker.url, OPEVA_CORS_ORIGINS=ALLOWED, OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"),
                      PREFECT_API_AUTH_STRING=platform.prefect_auth_string, MONGO_URI=platform.mongo_uri)
        yield own
    finally:
        own.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def api(api_platform: Platform) -> str:
    return api_platform.api_url


def ws_url(api: str, exchange: str) -> str:
    return f"{api.replace('http://', 'ws://')}/ws/data?exchange_name={exchange}"


async def declare(broker: LocalRabbit, exchange: str) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        await (await conn.channel()).declare_exchange(exchange, aio_pika.ExchangeType.FANOUT)


async def publish(broker: LocalRabbit, exchange: str, bodies: list[bytes]) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        ex = await (await conn.channel()).get_exchange(exchange, ensure=True)
        for body in bodies:
            await ex.publish(aio_pika.Message(body), routing_key="")


def wait_queues(broker: LocalRabbit, count: int) -> None:
    wait_for(lambda: len(broker.queues()) == count, timeout=90, interval=0.2, what=f"{count} queues on the broker")


def test_clients_of_one_exchange_share_one_queue_which_goes_with_the_last(broker, api):
    """Two clients, one consumer: the API's feed of the exchange is one temporary queue; a message
    published as soon as a client's handshake is done reaches it; the queue outlives the first
    client to leave and goes with the last."""
    asyncio.run(declare(broker, "site-a"))
    before = len(broker.queues())
    bodies = [json.dumps({"seq": i, "observations": {"solar_generation": i / 10}}).encode() for i in range(50)]

    async def scenario() -> list[list[dict]]:
        async with connect(ws_url(api, "site-a")) as one:
            async with connect(ws_url(api, "site-a"), origin=ALLOWED) as two:
                await publish(broker, "site-a", bodies)  # no waiting: joining is part of the handshake
                got = [[json.loads(await asyncio.wait_for(c.recv(), 10)) for _ in bodies] for c in (one, two)]
                assert len(await asyncio.to_thread(broker.queues)) == before + 1
            await asyncio.sleep(1)
            assert len(await asyncio.to_thread(broker.queues)) == before + 1  # `one` still reads it
            await publish(broker, "site-a", [b'{"after": 1}'])
            assert json.loads(await asyncio.wait_for(one.recv(), 10)) == {"after": 1}
        return got

    one, two = asyncio.run(scenario())
    assert one == two == [json.loads(b) for b in bodies]
    wait_queues(broker, before)  # the exchange's last client left: its queue went


def test_several_clients_each_get_every_message_in_order(broker, api):
    """8 clients of one exchange, 1,000 messages at 200/s published from another thread: each
    client receives exactly the published sequence."""
    asyncio.run(declare(broker, "site-many"))
    total, clients = 1000, 8

    async def paced() -> None:
        async with await aio_pika.connect(broker.url) as conn:
            ex = await (await conn.channel()).get_exchange("site-many", ensure=True)
            t0 = time.monotonic()
            for i in range(total):
                await asyncio.sleep(max(0.0, t0 + i / 200 - time.monotonic()))
                await ex.publish(aio_pika.Message(json.dumps({"seq": i}).encode()), routing_key="")

    async def scenario() -> list[list[int]]:
        sockets = [await connect(ws_url(api, "site-many")) for _ in range(clients)]
        try:
            async def read(ws) -> list[int]:
                return [json.loads(await asyncio.wait_for(ws.recv(), 30))["seq"] for _ in range(total)]

            readers = [asyncio.create_task(read(ws)) for ws in sockets]
            await asyncio.to_thread(asyncio.run, paced())
            return await asyncio.gather(*readers)
        finally:
            for ws in sockets:
                await ws.close()

    for got in asyncio.run(scenario()):
        assert got == list(range(total))


def test_a_body_that_is_not_json_arrives_as_raw(broker, api):
    asyncio.run(declare(broker, "site-raw"))
    before = len(broker.queues())

    async def scenario() -> list[dict]:
        async with connect(ws_url(api, "site-raw")) as ws:
            await asyncio.to_thread(wait_queues, broker, before + 1)
            await publish(broker, "site-raw", [b"temperature=21.5", b"\xff\xfe", b'{"x": NaN}', b"[1, 2]"])
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]

    assert asyncio.run(scenario()) == [{"raw": "temperature=21.5"}, {"raw": "\ufffd\ufffd"}, {"raw": '{"x": NaN}'}, [1, 2]]


def test_an_unknown_exchange_is_accepted_then_closed_1008_with_a_reason_and_not_created(broker, api):
    before = len(broker.queues())

    async def closed(exchange: str) -> ConnectionClosed:
        async with connect(ws_url(api, exchange)) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
        return info.value

    unknown = asyncio.run(closed("no-such-site"))
    assert unknown.rcvd.code == 1008 and "'no-such-site' does not exist" in unknown.rcvd.reason
    for bad, said in (("", "exchange_name is required"), ("a%20b", "exchange_name must be"), ("amq.fanout", "broker's own")):
        info = asyncio.run(closed(bad))
        assert info.rcvd.code == 1008 and said in info.rcvd.reason, (bad, info.rcvd)

    async def exists() -> bool:
        async with await aio_pika.connect(broker.url) as conn:
            try:
                await (await conn.channel()).get_exchange("no-such-site", ensure=True)
                return True
            except aio_pika.exceptions.ChannelClosed:
                return False

    assert not asyncio.run(exists())
    wait_queues(broker, before)


def test_a_foreign_origin_is_refused_at_the_handshake(broker, api):
    asyncio.run(declare(broker, "site-o"))

    async def handshake(origin: str) -> int:
        try:
            async with connect(ws_url(api, "site-o"), origin=origin):
                return 101
        except InvalidStatus as exc:
            assert json.loads(exc.response.body)["detail"].startswith("WebSocket from origin"), exc.response.body
            return exc.response.status_code

    assert asyncio.run(handshake(FOREIGN)) == 403
    assert asyncio.run(handshake("null")) == 403
    assert asyncio.run(handshake(ALLOWED)) == 101


def test_live_frames_and_history_agree_on_field_names(platform, broker, api):
    """A site publishes the document it stores (MongoDB Extended JSON, as bson.json_util writes
    it); the live frame equals the /historical-data item of the same document."""
    site = "live_site"
    r = httpx.post(f"{api}/schema/create", json={"site": site, "schema": {"buildings": {}}}, timeout=30)
    assert r.status_code in (200, 409), r.text
    doc = {"timestamp": datetime(2025, 5, 27, 10, 15, tzinfo=timezone.utc), "community": {"energy_in_total": 3.5, "energy_out_total": 1.25},
           "observations": {"solar_generation": 0.4, "non_shiftable_load": 1.1, "batteries": {"b1": {"energy_in": 0.2, "SoC": 0.5}},
                            "energy_tariffs": {"OMIE": {"energy_price": {"values": [0.11]}}}}}
    with pymongo.MongoClient(platform.mongo_uri) as client:
        client[site]["building_live"].insert_one(dict(doc))
    asyncio.run(declare(broker, site))
    before = len(broker.queues())

    async def live() -> dict:
        async with connect(ws_url(api, site)) as ws:
            await asyncio.to_thread(wait_queues, broker, before + 1)
            stored = dict(doc, _id="65a1b2c3d4e5f60718293a4b")  # a site's copy carries its own _id
            await publish(broker, site, [json_util.dumps(stored, json_options=json_util.RELAXED_JSON_OPTIONS).encode()])
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    frame = asyncio.run(live())
    history = httpx.get(f"{api}/historical-data/{site}", params={"from_ts": "2025-05-27T00:00:00Z", "until_ts": "2025-05-28T00:00:00Z"}, timeout=30)
    assert history.status_code == 200, history.text
    item = history.json()["collections"]["building_live"]["items"][0]
    assert frame == item
    assert frame["timestamp"] == "2025-05-27T10:15:00+00:00"


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def test_a_client_that_falls_behind_is_closed_with_a_reason_and_delays_no_one(broker, api_platform):
    """A client that stops reading while 16 MB are published (2,000 x 8 KB at 400/s, 12 MB deflated): it is closed
    with 1013 and a reason once its backlog passes the bound; what it got before is an unbroken,
    in-order prefix; a client reading alongside gets every message in order; the API's peak
    memory does not take the published volume in."""
    api, pid = api_platform.api_url, next(s.proc.pid for s in api_platform.services if s.name == "api")
    asyncio.run(declare(broker, "site-slow"))
    before, peak = len(broker.queues()), _peak_rss_mb(pid)
    total = 2000

    async def paced() -> None:
        async with await aio_pika.connect(broker.url) as conn:
            ex = await (await conn.channel()).get_exchange("site-slow", ensure=True)
            t0 = time.monotonic()
            for i in range(total):  # random padding: the socket's per-message deflate would shrink "xxx..." to nothing
                await asyncio.sleep(max(0.0, t0 + i / 400 - time.monotonic()))
                await ex.publish(aio_pika.Message(json.dumps({"seq": i, "pad": secrets.token_urlsafe(6000)}).encode()), routing_key="")

    async def scenario() -> tuple[list[int], list[int], ConnectionClosed]:
        # Reads nothing, then TCP pushes back; a small fixed receive buffer (no autotuning: Linux
        # grows a loopback one to 32 MB) so the kernel does not absorb what the rule must catch.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.connect(("127.0.0.1", api_platform.api_port))
        sock.setblocking(False)
        async with connect(ws_url(api, "site-slow"), sock=sock, max_queue=1, max_size=None) as slow, \
                connect(ws_url(api, "site-slow"), max_size=None) as fast:
            async def read_fast() -> list[int]:
                return [json.loads(await asyncio.wait_for(fast.recv(), 30))["seq"] for _ in range(total)]

            reader = asyncio.create_task(read_fast())
            await asyncio.to_thread(asyncio.run, paced())
            fast_seqs = await reader
            slow_seqs: list[int] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    slow_seqs.append(json.loads(await asyncio.wait_for(slow.recv(), 30))["seq"])
            return fast_seqs, slow_seqs, closed.value

    fast_seqs, slow_seqs, closed = asyncio.run(scenario())
    assert fast_seqs == list(range(total)), "the reading client missed or reordered messages"
    assert closed.rcvd is not None and closed.rcvd.code == 1013 and "fell behind" in closed.rcvd.reason, closed
    assert slow_seqs == list(range(len(slow_seqs))) and len(slow_seqs) < total, f"not an unbroken prefix: {len(slow_seqs)} frames"
    assert _peak_rss_mb(pid) - peak < 20, f"the API's peak memory grew by {_peak_rss_mb(pid) - peak:.1f} MB"
    wait_queues(broker, before)


def test_with_tokens_on_the_socket_needs_a_token_in_the_header_or_the_query(platform, broker):
    asyncio.run(declare(broker, "site-t"))
    home = Path(tempfile.mkdtemp(prefix="opeva-live-api-tokens-"))
    own = Platform(home=home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port, api_port=free_port(), data_dir=platform.data_dir)
    try:
        own.start_api(OPEVA_AMQP_URL=broker.url, OPEVA_API_TOKENS="ana:tok-ana-1", OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"),
                      PREFECT_API_AUTH_STRING=platform.prefect_auth_string, MONGO_URI=platform.mongo_uri)
        url = ws_url(own.api_url, "site-t")

        async def first(target: str, **headers: str) -> tuple[int | None, str]:
            async with connect(target, additional_headers=headers) as ws:
                try:
                    await asyncio.wait_for(ws.recv(), 3)
                except ConnectionClosed as exc:
                    return exc.rcvd.code, exc.rcvd.reason
                except asyncio.TimeoutError:
                    return None, "open"
            return None, "?"

        code, reason = asyncio.run(first(url))
        assert code == 1008 and "missing bearer token" in reason
        code, reason = asyncio.run(first(url + "&access_token=wrong"))
        assert code == 1008 and "invalid bearer token" in reason
        assert asyncio.run(first(url, Authorization="Bearer tok-ana-1")) == (None, "open")
        assert asyncio.run(first(url + "&access_token=tok-ana-1")) == (None, "open")
    finally:
        own.stop()
        shutil.rmtree(home, ignore_errors=True)


# -- a real browser -----------------------------------------------------------------------------

PAGE = """<!doctype html><title>live</title><script>
let n = 0;  // fetches may land out of order: each report carries its place
const report = (what, data) => fetch('/report/' + (n++) + '/' + what, {method: 'POST', body: data});
const ws = new WebSocket(%(url)s);
ws.onopen = () => report('open', '');
ws.onmessage = (e) => report('message', e.data);
ws.onclose = (e) => report('close', JSON.stringify({code: e.code, reason: e.reason}));
</script>"""


class _Pages(http.server.BaseHTTPRequestHandler):
    url = ""
    reports: list[tuple[str, str, str, int]] = []

    def do_GET(self) -> None:  # noqa: N802
        body = (PAGE % {"url": json.dumps(self.url)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        _, _, seq, what = self.path.split("/", 3)
        self.reports.append((self.headers.get("Host", ""), what, data, int(seq)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _browser(url: str, profile: Path) -> subprocess.Popen:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium not found: apt-get install chromium"
    return subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                             "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_a_browser_page_of_an_allowed_origin_receives_published_messages(broker, api, tmp_path):
    asyncio.run(declare(broker, "site-browser"))
    before = len(broker.queues())
    _Pages.url, _Pages.reports = ws_url(api, "site-browser"), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PAGE_PORT), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    allowed = _browser(f"{ALLOWED}/", tmp_path / "allowed")
    foreign = _browser(f"{FOREIGN}/", tmp_path / "foreign")
    try:
        wait_for(lambda: any(h == f"127.0.0.1:{PAGE_PORT}" and k == "open" for h, k, *_ in _Pages.reports), timeout=60, what="the page's WebSocket open")
        wait_queues(broker, before + 1)  # the foreign page got no queue
        sent = {"timestamp": "2025-05-27T10:15:00+00:00", "observations": {"solar_generation": 0.4}}
        asyncio.run(publish(broker, "site-browser", [json.dumps(sent).encode(), b"not json"]))
        wait_for(lambda: len([r for r in _Pages.reports if r[1] == "message"]) == 2, timeout=30, what="two messages in the page")
        messages = [json.loads(d) for h, k, d, _ in sorted(_Pages.reports, key=lambda r: r[3]) if k == "message"]
        assert messages == [sent, {"raw": "not json"}]
        assert all(h == f"127.0.0.1:{PAGE_PORT}" for h, k, *_ in _Pages.reports if k == "message")
        wait_for(lambda: any(h == f"localhost:{PAGE_PORT}" and k == "close" for h, k, *_ in _Pages.reports), timeout=30, what="the foreign page's close")
        foreign_close = [json.loads(d) for h, k, d, _ in _Pages.reports if h == f"localhost:{PAGE_PORT}" and k == "close"][0]
        assert foreign_close["code"] == 1006  # the handshake was refused: the page never got a connection
        assert not any(h == f"localhost:{PAGE_PORT}" and k in ("open", "message") for h, k, *_ in _Pages.reports)
    finally:
        for proc in (allowed, foreign):
            os.killpg(proc.pid, signal.SIGTERM)  # chromium and its helpers (its own session)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        server.shutdown()
        server.server_close()
    wait_queues(broker, before)  # the browser's going removed its queue
