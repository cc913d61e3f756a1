"""Hostile requests against real API processes: tokens parsed once and strictly, auth
and size refused before a body byte is read, idempotency per user and body, Prefect's
4xx kept, absurd limits refused, linked datasets and swapped links not followed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from api.security import TokenConfigError, parse_tokens
from core.settings import PROJECT_ROOT
from deployments.platform import Platform, free_port
from helpers import experiment, gateway_call

TOKENS = {"alice": "tok-req-alice", "bob": "tok-req-bob", "root": "tok-req-root"}
GIB = 1 << 30


@pytest.fixture(scope="module")
def users_url(platform) -> Iterator[str]:
    api = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                   api_port=free_port(), data_dir=platform.data_dir)
    api.start_api(OPEVA_API_TOKENS=",".join(f"{u}:{t}" for u, t in TOKENS.items()), OPEVA_API_ADMINS="root",
                  OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"))
    yield api.api_url
    api.stop()


def as_user(url: str, user: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKENS[user]}"})


# -- one token parser ------------------------------------------------------------------

BAD_ENTRIES = {
    "al+ice:tok-1": "entry 1 ('al+ice')", "bob:tok-2,al ice:tok-3": "entry 2 ('al ice')", "o'brien:tok-4": "entry 1 (\"o'brien\")",
    'alice:"tok-5"': "entry 1 ('alice')", "alice:": "entry 1 ('alice'): the token is empty", "alice:t-6,alice:t-7": "listed twice",
    "alice:same-8,bob:same-8": "same token", "alice:t-9,,bob:t-10": "entry 2 is empty", "a token with spaces": "entry 1",
}


@pytest.mark.parametrize("value", sorted(BAD_ENTRIES))
def test_a_malformed_token_entry_refuses_start_up_naming_it(value):
    with pytest.raises(TokenConfigError) as refused:
        parse_tokens(value)
    assert BAD_ENTRIES[value] in str(refused.value)
    assert "tok-" not in str(refused.value) and "same-8" not in str(refused.value)  # never the token itself


def test_the_api_process_refuses_a_malformed_entry_and_no_user_becomes_an_admin():
    env = {**os.environ, "OPEVA_API_TOKENS": "alice:tok-a,mal+lory:tok-m", "OPEVA_API_ADMINS": "alice"}
    proc = subprocess.run([sys.executable, "-c", "import api.main"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "refuses to start" in proc.stderr and "entry 2 ('mal+lory')" in proc.stderr and "tok-m" not in proc.stderr, proc.stderr[-800:]
    users = {u.name: u for _, u in parse_tokens("alice:t1,bob:t2,legacy-token", frozenset({"alice"}))}
    assert users["alice"].admin and not users["bob"].admin and not users["bob"].runner
    assert users["token3"].admin  # the documented old plain list, kept as it was


# -- auth and size before the body ---------------------------------------------------------

def _headers_only(url: str, path: str, length: int, token: str | None = None, content_type: str = "application/json") -> tuple[int, float, int]:
    """Send a request's headers announcing ``length`` body bytes, and no body: (status,
    seconds to the answer, body bytes sent). A server that waited for the body would time out."""
    port = int(url.rsplit(":", 1)[1])
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {content_type}", f"Content-Length: {length}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        started = time.monotonic()
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = sock.recv(4096).decode("latin-1")
        return int(answer.split()[1]), time.monotonic() - started, 0


def test_anonymous_2_gib_upload_is_refused_401_before_its_body_is_read(users_url):
    for path, ctype in (("/dataset/upload", "multipart/form-data; boundary=x"), ("/run-simulation", "application/json"),
                        ("/experiment-config/create", "application/json")):
        status, seconds, sent = _headers_only(users_url, path, 2 * GIB, content_type=ctype)
        assert status == 401 and sent == 0, (path, status)
        assert seconds < 10, (path, seconds)


def _queued(sock: socket.socket) -> bytes:
    """What the server sent before it reset the connection (b"" if nothing is queued)."""
    try:
        return sock.recv(4096)
    except (BlockingIOError, ConnectionResetError, OSError):
        return b""


def _stream_until_answered(url: str, path: str, length: int, headers: dict[str, str]) -> tuple[int, int, int]:
    """Stream zeros as a ``length``-byte body, reading whenever the server speaks:
    (status, bytes sent before the answer, bytes the server took after it before the
    connection broke). A server that drained the body would take all of it."""
    import select

    port = int(url.rsplit(":", 1)[1])
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {length}", *(f"{k}: {v}" for k, v in headers.items())]
    chunk = b"0" * (1 << 16)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        sent, answer, after = 0, b"", 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sent + after < length:
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            if readable and not answer:
                answer = sock.recv(4096)
                if not answer:
                    break
            elif writable:
                try:
                    n = sock.send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    # The answer and the server's reset can both land between select() and send():
                    # the send reports the reset, but the answer is still queued (Linux returns
                    # queued bytes before the error). Seen in CI as status 0.
                    answer = answer or _queued(sock)
                    break
                if answer:
                    after += n
                else:
                    sent += n
            elif answer:
                break  # the server neither reads nor answers more: not draining
    return int(answer.split()[1]) if answer else 0, sent, after


def test_a_streamed_anonymous_2_gib_body_is_not_read(users_url):
    """The 401 comes after the headers, and the server closes the connection instead of
    reading the rest: what goes out is bounded by the sockets' buffers, not the body."""
    status, before, after = _stream_until_answered(users_url, "/dataset/upload", 2 * GIB, {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 401
    assert before + after < 64 << 20, f"{(before + after) >> 20} MiB of a 2 GiB body went out: the server read it"


def test_oversized_bodies_are_413_before_being_read(users_url):
    for path, length, ctype in (("/run-simulation", 6 << 20, "application/json"), ("/experiment-config/create", 50 << 20, "application/json"),
                                ("/dataset/upload", 2 * GIB + 1, "multipart/form-data; boundary=x")):
        status, _, sent = _headers_only(users_url, path, length, token=TOKENS["alice"], content_type=ctype)
        assert status == 413 and sent == 0, (path, status)


# -- bounds ------------------------------------------------------------------------------

def test_absurd_resources_and_page_sizes_are_422(api):
    for memory in ("10000000000000000000000000000", "1025g", "1k", "9" * 40 + "g"):
        r = api.post("/run-simulation", json={"config": experiment(), "target_host": "offline", "resources": {"memory": memory}})
        assert r.status_code == 422 and "memory" in r.json()["detail"], (memory, r.text)
    for cpus in (1e9, 0, -1):
        assert api.post("/run-simulation", json={"config": experiment(), "target_host": "offline", "resources": {"cpus": cpus}}).status_code == 422
    assert api.get("/jobs", params={"limit": 1001}).status_code == 422
    assert api.get("/jobs", params={"limit": 1000}).status_code == 200


# -- idempotency per user and body ------------------------------------------------------------

def test_an_idempotency_key_is_per_user_and_per_body(users_url):
    key = f"key-{uuid.uuid4().hex[:8]}"
    body = {"config": experiment("idem", "1"), "target_host": "offline"}
    with as_user(users_url, "alice") as alice, as_user(users_url, "bob") as bob, as_user(users_url, "root") as root:
        first = alice.post("/run-simulation", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 200, first.text
        again = alice.post("/run-simulation", json=body, headers={"Idempotency-Key": key})
        assert again.json()["job_id"] == first.json()["job_id"] and "Idempotency-Key" in again.json()["message"]
        changed = alice.post("/run-simulation", json={**body, "config": experiment("idem", "2")}, headers={"Idempotency-Key": key})
        assert changed.status_code == 409 and "different request body" in changed.json()["detail"], changed.text
        other_host = alice.post("/run-simulation", json={**body, "target_host": "local"}, headers={"Idempotency-Key": key})
        assert other_host.status_code == 409, other_host.text
        theirs = bob.post("/run-simulation", json=body, headers={"Idempotency-Key": key})
        assert theirs.status_code == 200 and theirs.json()["job_id"] != first.json()["job_id"], theirs.text
        info = bob.get(f"/job-info/{theirs.json()['job_id']}").json()
        assert info["submitted_by"] == "bob"
        for job in (first.json()["job_id"], theirs.json()["job_id"]):
            root.delete(f"/job/{job}")


# -- Prefect's own 4xx --------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, expected", [("GET", "/flow_runs/{id}", 404), ("POST", "/flow_runs/filter", 422)])
def test_prefect_4xx_answers_keep_their_meaning(platform, method, path, expected):
    """A real Prefect answer (the test platform's server), through the API's handler: its code, not 503."""
    from api.errors import prefect_status_error
    from prefect.exceptions import PrefectHTTPStatusError

    async def call(gateway):
        try:
            await gateway.client.request(method, path.replace("{id}", str(uuid.uuid4())), json={"limit": "many"} if method == "POST" else None)
        except PrefectHTTPStatusError as exc:
            return exc
        return None

    exc = gateway_call(call)
    assert exc is not None and exc.response.status_code == expected
    answer = prefect_status_error(exc)
    assert answer.status_code == expected and b"Prefect" in answer.body


# -- links -------------------------------------------------------------------------------------

def test_a_dataset_that_is_a_link_is_not_deleted_nor_its_target(api, storage, tmp_path):
    target = storage.datasets_dir / f"real-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    (target / "keep.csv").write_text("a\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.csv").write_text("b\n")
    for name, points_at in ((f"link-in-{uuid.uuid4().hex[:6]}", target), (f"link-out-{uuid.uuid4().hex[:6]}", outside)):
        (storage.datasets_dir / name).symlink_to(points_at, target_is_directory=True)
        r = api.delete(f"/dataset/{name}")
        assert r.status_code == 403 and "detail" in r.json(), r.text
        assert (storage.datasets_dir / name).is_symlink() and (points_at / "keep.csv").exists()
        (storage.datasets_dir / name).unlink()


def test_simulation_files_are_served_from_a_descriptor_never_through_a_link(api, storage):
    job = api.post("/run-simulation", json={"config": experiment("sd", "x"), "command": ["true"], "target_host": "offline"}).json()["job_id"]
    other = api.post("/run-simulation", json={"config": experiment("sd", "y"), "command": ["true"], "target_host": "offline"}).json()["job_id"]
    secret = storage.job(other).dir / "secret.csv"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("other user's data\n")
    session = storage.job(job).dir / "results" / "simulation_data" / "s1"
    session.mkdir(parents=True)
    (session / "ok.csv").write_text("a,b\n1,2\n")
    (session / "leaf.csv").symlink_to(secret)  # a link inside the job's own folder, to a file inside the data root
    (session / "sub").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(session / "pipe.csv")
    ask = lambda rel: api.post("/simulation-data/file", json={"job_id": job, "session": "s1", "relative_path": rel})  # noqa: E731
    ok = ask("ok.csv")
    assert ok.status_code == 200 and ok.text == "a,b\n1,2\n" and ok.headers["content-length"] == "8"
    for rel in ("leaf.csv", "sub/secret.csv", "pipe.csv"):
        r = ask(rel)
        assert r.status_code == 403 and "other user" not in r.text, (rel, r.text)
    assert ask("nothing.csv").status_code == 404
    for j in (job, other):
        api.delete(f"/job/{j}")


def test_a_key_raced_by_another_api_replica_is_still_a_conflict_for_another_body(api):
    """Two API replicas (deployments/scaled.py) may both read "no run with this key" and both
    create: Prefect answers the second create with the first's run (the key is unique). The
    gateway reads keyed runs back, so the other body gets a 409, the same body the same job."""
    from api.gateway import RunRequest, Submitted
    from api.idempotency import DIGEST_LABEL, IdempotencyConflict

    key = f"race-{uuid.uuid4().hex[:8]}"
    first = api.post("/run-simulation", json={"config": experiment("race", "1"), "target_host": "offline"}, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    job_id = first.json()["job_id"]

    async def race(gateway):
        run = await gateway.read_run(job_id)
        assert run.idempotency_key.endswith(key)
        mine, theirs = ({**run.labels, DIGEST_LABEL: digest} for digest in (run.labels[DIGEST_LABEL], "0" * 64))
        answers = []
        for labels in (mine, theirs):  # what the slower replica sends after its read found nothing
            request = RunRequest(parameters=run.parameters, idempotency_key=run.idempotency_key, labels=labels)
            response = await gateway.client.request("POST", f"/deployments/{run.deployment_id}/create_flow_run/bulk", json=[request.body()])
            made = response.json()["results"][0]
            assert made["status"] == "CREATED" and made["flow_run_id"] == job_id  # Prefect answers the first run
            answers += await gateway._recheck_keys([request], [Submitted(run.id, run.name)])
        return answers

    same, other = gateway_call(race)
    assert isinstance(same, Submitted) and str(same.id) == job_id
    assert isinstance(other, IdempotencyConflict) and str(other.run_id) == job_id
    api.delete(f"/job/{job_id}")
