"""Who may do what: tokens mapped to users and roles, the Host allow-list, docs visibility and
the production start-up rule, against real API processes over HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from deployments.platform import Platform, free_port
from secure_http import assert_clean_4xx, raw_request

TOKENS = {"alice": "tok-alice-1", "bob": "tok-bob-2", "root": "tok-root-3"}
EXPERIMENT = {"experiment": {"name": "auth", "run_name": "r"}}


@pytest.fixture(scope="module")
def users_api(platform) -> Iterator[str]:
    """An API with users: alice (plain), bob (runner), root (admin); docs private; one extra Host name."""
    api = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                   api_port=free_port(), data_dir=platform.data_dir)
    api.start_api(
        OPEVA_API_TOKENS=",".join(f"{u}:{t}" for u, t in TOKENS.items()), OPEVA_API_ADMINS="root", OPEVA_API_RUNNERS="bob",
        OPEVA_PUBLIC_DOCS="0", OPEVA_ALLOWED_HOSTS="opeva.example.org", OPEVA_ENV="production",
        OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"),
    )
    yield api.api_url
    api.stop()


def client(url: str, user: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user else {}
    return httpx.Client(base_url=url, timeout=30, headers=headers)


@pytest.mark.parametrize("authorization", [b"Bearer \xff", b"Bearer \xc3\xa9t\xc3\xa9", b"Bearer " + b"x" * 8000, b"Bearer",
                                           b"Bearer  ", b"bearer tok-alice-1x", b"Basic dG9rLWFsaWNlLTE=", b"tok-alice-1", b"\xff\xfe"])
def test_bad_tokens_are_401_not_500(users_api, authorization):
    answer = raw_request(users_api, "GET", "/jobs", headers={"Authorization": authorization})
    assert answer.status == 401, answer.describe()
    assert_clean_4xx(answer, "tok-")


def test_submitted_by_is_the_token_user_and_only_owner_or_admin_may_stop_or_delete(users_api):
    with client(users_api, "alice") as alice, client(users_api, "bob") as bob, client(users_api, "root") as root:
        r = alice.post("/run-simulation", json={"config": EXPERIMENT, "submitted_by": "mallory"})
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        info = alice.get(f"/job-info/{job_id}").json()
        assert info.get("submitted_by") == "alice" or info.get("job_info", {}).get("submitted_by") == "alice", info
        assert bob.post(f"/stop/{job_id}").status_code == 403
        assert alice.post(f"/stop/{job_id}").status_code == 200
        refused = bob.delete(f"/job/{job_id}")
        assert refused.status_code == 403 and "owner" in refused.json()["detail"]
        assert root.delete(f"/job/{job_id}").status_code == 200  # an admin may


def test_operator_actions_are_for_admins(users_api):
    with client(users_api, "alice") as alice, client(users_api, "root") as root:
        job_id = alice.post("/run-simulation", json={"config": EXPERIMENT, "target_host": "offline"}).json()["job_id"]
        refused = alice.post(f"/ops/jobs/{job_id}/cancel", json={"reason": "mine"})
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        assert alice.post("/ops/queue/cleanup", json={"force": True}).status_code == 403
        done = root.post(f"/ops/jobs/{job_id}/cancel", json={"reason": "operator"})
        assert done.status_code == 200 and done.json()["status"] == "canceled", done.text


def test_command_and_image_need_the_runner_role(users_api):
    with client(users_api, "alice") as alice, client(users_api, "bob") as bob, client(users_api, "root") as root:
        for extra in ({"command": ["true"]}, {"image": "opeva-runtime:other"}):
            r = alice.post("/run-simulation", json={"config": EXPERIMENT, **extra})
            assert r.status_code == 403 and "OPEVA_API_RUNNERS" in r.json()["detail"], r.text
        for who in (bob, root):
            r = who.post("/run-simulation", json={"config": EXPERIMENT, "command": ["true"]})
            assert r.status_code == 200, r.text
            who.post(f"/stop/{r.json()['job_id']}")


def test_docs_are_private_when_told_and_declare_the_scheme(users_api, api):
    assert_clean_4xx(raw_request(users_api, "GET", "/openapi.json"))
    assert raw_request(users_api, "GET", "/docs").status == 401
    with client(users_api, "alice") as alice:
        schema = alice.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        assert schema["paths"]["/jobs"]["get"]["security"] == [{"bearerAuth": []}]
        assert "security" not in schema["paths"]["/health"]["get"]
        assert alice.get("/docs").status_code == 200
    open_schema = api.get("/openapi.json").json()  # the default API: public docs, no tokens, no scheme
    assert "securitySchemes" not in open_schema.get("components", {})


@pytest.mark.parametrize("host, allowed", [
    ("evil.example", False), ("localhost.evil.example", False), ("127.0.0.1.nip.io", False), ("", False),
    ("opeva.example.org", True), ("OPEVA.example.org.:443", True), ("sub.opeva.example.org", False),
    ("localhost", True), ("[::1]", True), ("127.0.0.1:1", True),
])
def test_host_allow_list(users_api, host, allowed):
    answer = raw_request(users_api, "GET", "/health", host=host)
    if allowed:
        assert answer.status == 200, answer.describe()
    else:
        assert answer.status == 400 and "OPEVA_ALLOWED_HOSTS" in answer.json()["detail"], answer.describe()


def test_default_api_allows_loopback_names_only(platform):
    port = platform.api_url.rsplit(":", 1)[1]
    assert raw_request(platform.api_url, "GET", "/health", host=f"localhost:{port}").status == 200
    assert raw_request(platform.api_url, "GET", "/health", host=f"[::1]:{port}").status == 200
    rebound = raw_request(platform.api_url, "GET", "/jobs", host=f"attacker.example:{port}")
    assert rebound.status == 400
    assert_clean_4xx(rebound)


def test_production_refuses_to_start_open(platform):
    env = platform.env(OPEVA_ENV="production", OPEVA_API_TOKENS="", OPEVA_ALLOW_OPEN="0")
    proc = subprocess.run([sys.executable, "-c", "import api.main"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "OPEVA_API_TOKENS" in proc.stderr, proc.stderr[-500:]


def test_production_may_run_open_when_told_explicitly(monkeypatch):
    from fastapi import FastAPI

    from api import security

    monkeypatch.setenv("OPEVA_ENV", "production")
    monkeypatch.setenv("OPEVA_API_TOKENS", "")
    with pytest.raises(SystemExit):
        security.install(FastAPI(), max_body_bytes=1024)
    monkeypatch.setenv("OPEVA_ALLOW_OPEN", "1")
    app = FastAPI()
    security.install(app, max_body_bytes=1024)
    assert not app.state.auth.enabled


def test_plain_token_list_still_works(secured_api_url):
    with httpx.Client(base_url=secured_api_url, timeout=30, headers={"Authorization": "Bearer other-token"}) as c:
        r = c.post("/run-simulation", json={"config": EXPERIMENT, "command": ["true"]})  # plain tokens keep every right
        assert r.status_code == 200, r.text
        assert c.post(f"/stop/{r.json()['job_id']}").status_code == 200


def test_compose_runs_the_api_closed_and_gives_tokens_to_the_api_only():
    import yaml

    from core.settings import PROJECT_ROOT

    services = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    apis = [name for name in services if name.startswith("api-")]  # the replicas behind haproxy (deployments/scaled.py)
    assert apis
    for name in apis:
        api_env = services[name]["environment"]
        assert api_env["OPEVA_ENV"] == "production" and api_env["OPEVA_ALLOW_OPEN"].endswith(":-0}")
    for name, service in services.items():
        if name not in apis:
            assert "OPEVA_API_TOKENS" not in (service.get("environment") or {}), name


def test_inference_targets_are_created_and_removed_by_admins_only(users_api):
    with client(users_api, "alice") as alice, client(users_api, "root") as root:
        refused = alice.post("/deploy/inferences", json={"id": "auth-made", "host": "local", "base_url": "http://127.0.0.1:9"})
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        assert "auth-made" not in {t["id"] for t in alice.get("/deploy/inferences").json()}
        made = root.post("/deploy/inferences", json={"id": "auth-made", "host": "local", "base_url": "http://127.0.0.1:9"})
        assert made.status_code == 201, made.text
        assert alice.delete("/deploy/inferences/auth-made").status_code == 403
        assert "auth-made" in {t["id"] for t in alice.get("/deploy/inferences").json()}, "listing is for every user"
        assert root.delete("/deploy/inferences/auth-made").status_code == 200
