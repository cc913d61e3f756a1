"""The plain-HTTP Prefect calls (core/prefect_rest.py) that make up's reconciler, the host join and a
run container's PID 1 share: against this tier's real Prefect server, and against a small local HTTP
server that answers what a broken or hostile middlebox might (the answer is never trusted)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from core.prefect_rest import PrefectRest
from deployments.platform import Platform


class Odd(BaseHTTPRequestHandler):
    """Answers GET /flow_runs/<anything> with the body named by the id, and remembers the headers."""

    bodies = {"list-state": {"state": ["CANCELLING"]}, "list-body": ["CANCELLING"], "number-type": {"state": {"type": 3}},
              "no-state": {"state": None}, "cancelling": {"state": {"type": "CANCELLING"}}}
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Odd.seen.append(self.headers.get("Authorization"))
        body = json.dumps(self.bodies.get(self.path.rsplit("/", 1)[-1], {})).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def odd_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("run_id, expected", [("list-state", None), ("list-body", None), ("number-type", None), ("no-state", None),
                                              ("cancelling", "CANCELLING")])
def test_a_state_is_read_only_from_the_shape_prefect_answers_with(odd_server, run_id, expected):
    with PrefectRest(odd_server) as rest:
        assert rest.state_type(run_id) == expected


def test_credentials_follow_prefects_rule_auth_string_first_then_key(odd_server):
    Odd.seen.clear()
    for auth, key in (("opeva:s3cret", "pnu_key"), (None, "pnu_key"), ("no-colon", None), (None, None)):
        with PrefectRest(odd_server, auth, api_key=key) as rest:
            rest.state_type("cancelling")
    assert Odd.seen == [httpx.BasicAuth("opeva", "s3cret")._auth_header, "Bearer pnu_key", None, None]


def test_the_real_server_answers_a_state_the_runs_of_a_pool_and_a_proposal(platform: Platform):
    with PrefectRest(platform.prefect_api_url, platform.prefect_auth_string) as rest:
        flow = rest.http.post("/flows/", json={"name": "prefect-rest"}).raise_for_status().json()
        ids = [rest.http.post("/flow_runs/", json={"flow_id": flow["id"], "name": f"pr-{n}", "state": {"type": "PENDING"}})
               .raise_for_status().json()["id"] for n in range(3)]
        assert rest.state_type(ids[0]) == "PENDING"
        assert rest.set_state(ids[0], "RUNNING", "Running", "started") == "ACCEPT"
        assert {r["id"] for r in rest.runs(ids=ids, state_types=["PENDING"])} == set(ids[1:])
        with pytest.raises(httpx.HTTPStatusError):
            rest.state_type(str(uuid.uuid4()))  # 404: the caller decides (PID 1 polls again)
    with PrefectRest(platform.prefect_api_url, "opeva:wrong") as wrong, pytest.raises(httpx.HTTPStatusError):
        wrong.state_type(ids[0])
