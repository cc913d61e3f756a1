"""Experiment configs, malformed input and auth, over real HTTP against the running API."""

from __future__ import annotations

import httpx
import pytest

from helpers import API_TOKEN


def test_config_create_list_view_delete(api, storage):
    r = api.post("/experiment-configs/create", json={"file_name": "c1.yaml", "config": {"experiment": {"name": "a", "run_name": "b"}, "episodes": 3}})
    assert r.status_code == 200, r.text
    assert (storage.configs_dir / "c1.yaml").read_text().startswith("experiment:")
    assert "c1.yaml" in api.get("/experiment-configs").json()  # a bare array, as the OPEVA UI reads it
    view = api.get("/experiment-configs/c1.yaml").json()
    assert view["config"] == {"experiment": {"name": "a", "run_name": "b"}, "episodes": 3}

    again = api.post("/experiment-configs/create", json={"file_name": "c1.yaml", "config": {"x": 1}})
    assert again.status_code == 409 and "overwrite" in again.json()["detail"]
    replaced = api.post("/experiment-configs/create", json={"file_name": "c1.yaml", "config": "x: 2\n", "overwrite": True})
    assert replaced.status_code == 200
    assert api.get("/experiment-configs/c1.yaml").json()["config"] == {"x": 2}

    assert api.delete("/experiment-configs/c1.yaml").status_code == 200
    assert api.get("/experiment-configs/c1.yaml").status_code == 404
    assert api.delete("/experiment-configs/c1.yaml").status_code == 404


def test_config_seed_000_aliases(api):
    assert api.post("/config/create", json={"file_name": "old.yml", "config": {"k": "v"}}).status_code == 200
    assert "old.yml" in api.get("/configs").json()
    assert api.get("/config/old.yml").json()["config"] == {"k": "v"}
    assert api.delete("/config/old.yml").status_code == 200


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"file_name": "../escape.yaml", "config": {}}, 422, ".."),
        ({"file_name": "a/b.yaml", "config": {}}, 422, "/"),
        ({"file_name": "/etc/passwd.yaml", "config": {}}, 422, "file_name"),
        ({"file_name": "noext", "config": {}}, 422, ".yaml"),
        ({"file_name": "bad.yaml", "config": "a: [unclosed"}, 422, "YAML"),
        ({"file_name": "list.yaml", "config": "- 1\n- 2\n"}, 422, "mapping"),
        ({"file_name": "x.yaml"}, 422, "config"),
    ],
)
def test_config_create_refuses_bad_input(api, body, status, words):
    r = api.post("/experiment-configs/create", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


@pytest.mark.parametrize("name", ["..", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", ".hidden.yaml"])
def test_config_paths_cannot_escape(api, name):
    for method in ("GET", "DELETE"):
        r = api.request(method, f"/experiment-configs/{name}")
        assert 400 <= r.status_code < 500, (method, name, r.status_code)
        assert "detail" in r.json()


def test_malformed_bodies_get_clear_4xx(api):
    r = api.post("/run-simulation", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = api.post("/run-simulation", json={"config": "not-an-object"})
    assert r.status_code == 422 and "config" in r.json()["detail"]
    r = api.post("/run-simulation", json={"config": {"experiment": {"name": "a", "run_name": "b"}}, "unknown_field": 1})
    assert r.status_code == 422 and "unknown_field" in r.json()["detail"]
    r = api.post("/run-simulation", json=[1, 2, 3])
    assert r.status_code == 422
    r = api.post("/run-simulation")
    assert r.status_code == 422 and "required" in r.json()["detail"]
    r = api.post("/run-simulation", json={"config": {"experiment": {"name": "a", "run_name": "b"}}, "save_as": "../x.yaml"})
    assert r.status_code == 422 and "save_as" in r.json()["detail"]
    r = api.get("/jobs", params={"limit": "many"})
    assert r.status_code == 422 and "limit" in r.json()["detail"]


def test_huge_body_is_refused_with_413(api):
    big = b'{"config": {"experiment": {"name": "' + b"x" * (6 * 1024 * 1024) + b'", "run_name": "r"}}}'
    r = api.post("/run-simulation", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    def chunks():
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    r = api.post("/experiment-configs/create", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_auth_when_tokens_configured(secured_api_url):
    with httpx.Client(base_url=secured_api_url, timeout=30) as client:
        assert client.get("/health").status_code == 200  # always open
        r = client.get("/jobs")
        assert r.status_code == 401 and "bearer" in r.json()["detail"].lower()
        assert client.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/hosts", headers={"Authorization": "Basic abc"}).status_code == 401
        ok = client.get("/jobs", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert ok.status_code == 200 and isinstance(ok.json(), list)
        assert client.get("/experiment-configs", headers={"Authorization": "Bearer other-token"}).status_code == 200


def test_auth_off_by_default(api):
    assert api.get("/jobs").status_code == 200
