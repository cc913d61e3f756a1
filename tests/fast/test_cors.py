"""CORS and cross-origin state changes (api/cors.py), against real API processes over HTTP.

energaize_ui calls the API from its own origin: its preflights must pass for an allowed origin,
and a page from any other origin must change nothing, also with requests the browser sends
without a preflight (a multipart upload), whether auth is on or off.
"""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from deployments.platform import Platform, free_port

UI = "http://ui-host:5173"
OTHER_UI = "http://127.0.0.1:4173"
EVIL = "http://evil.example:8080"
TOKEN = "cors-token-1"


@pytest.fixture(scope="module")
def cors_api(platform) -> Iterator[str]:
    """An API with two allowed origins (a JSON list, upstream's variable name) and tokens on."""
    api = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                   api_port=free_port(), data_dir=platform.data_dir)
    api.start_api(CORS_ALLOWED_ORIGINS=f'["{UI}/", "{OTHER_UI}"]', OPEVA_API_TOKENS=f"carol:{TOKEN}",
                  OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"))
    yield api.api_url
    api.stop()


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def _zip(name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{name}/schema.json", b'{"buildings": {}}')
    return buf.getvalue()


def test_allowed_origin_preflight_answers_2xx_with_allow_headers(cors_api):
    for origin in (UI, OTHER_UI):
        r = httpx.options(f"{cors_api}/run-simulation", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"})
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == origin and r.headers["access-control-allow-credentials"] == "true"
        assert "POST" in r.headers["access-control-allow-methods"] and "DELETE" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"].lower() == "content-type,authorization"
        assert "Origin" in r.headers["vary"]
    # GETs are preflighted too (energaize sets Content-Type on every request), on every route shape
    r = httpx.options(f"{cors_api}/ai-manager-ui/hosts", headers={"Origin": UI, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == UI


def test_answers_to_an_allowed_origin_carry_cors_headers_errors_included(cors_api):
    auth = {"Authorization": f"Bearer {TOKEN}", "Origin": UI}
    ok = httpx.get(f"{cors_api}/jobs", headers=auth)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == UI
    assert "X-Total-Count" in ok.headers["access-control-expose-headers"]
    missing = httpx.get(f"{cors_api}/status/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == UI
    no_token = httpx.get(f"{cors_api}/jobs", headers={"Origin": UI})
    assert no_token.status_code == 401 and no_token.headers["access-control-allow-origin"] == UI  # the page can show why


def test_other_origins_get_no_cors_headers(cors_api):
    pre = httpx.options(f"{cors_api}/jobs", headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 403 and cors_headers(pre) == {} and EVIL in pre.json()["detail"]
    got = httpx.get(f"{cors_api}/jobs", headers={"Origin": EVIL, "Authorization": f"Bearer {TOKEN}"})
    assert got.status_code == 200 and cors_headers(got) == {}  # served, but the browser hides it from the page
    suffix = httpx.options(f"{cors_api}/jobs", headers={"Origin": UI + ".evil.example", "Access-Control-Request-Method": "GET"})
    assert suffix.status_code == 403 and cors_headers(suffix) == {}


@pytest.mark.parametrize("with_token", [True, False])
def test_foreign_origin_state_changes_are_refused_and_store_nothing(cors_api, platform, storage, with_token):
    """With a valid token too: a token a page could hold (or auth being off) is no licence for another origin."""
    name = f"cors-{uuid.uuid4().hex[:6]}"
    base = {"Authorization": f"Bearer {TOKEN}"} if with_token else {}
    for url in (cors_api, platform.api_url):  # auth on (allow-list set) and the default API (auth off, empty list)
        foreign = {**base, "Origin": EVIL}
        r = httpx.post(f"{url}/experiment-config/create", headers=foreign, json={"file_name": f"{name}.yaml", "yaml_content": "a: 1\n"})
        assert r.status_code == 403 and r.json()["detail"] == f"cross-origin POST from '{EVIL}' refused: the origin is not in OPEVA_CORS_ORIGINS"
        assert cors_headers(r) == {}
        up = httpx.post(f"{url}/dataset/upload", headers=foreign, files={"file": ("d.zip", _zip(name), "application/zip")}, data={"name": name})
        assert up.status_code == 403 and EVIL in up.json()["detail"]
        for method, path in (("PUT", "/experiment-config/x.yaml"), ("DELETE", f"/job/{uuid.uuid4()}"), ("PATCH", "/jobs"),
                             ("POST", "/ai-manager-ui/experiment-config/create")):
            r = httpx.request(method, f"{url}{path}", headers=foreign, json={"yaml_content": "a: 1\n"})
            assert r.status_code == 403, (method, path, r.text)
        blind = httpx.post(f"{url}/experiment-config/create", headers={**base, "Sec-Fetch-Site": "cross-site"},
                           json={"file_name": f"{name}.yaml", "yaml_content": "a: 1\n"})
        assert blind.status_code == 403 and "Sec-Fetch-Site" in blind.json()["detail"]
        null = httpx.post(f"{url}/experiment-config/create", headers={**base, "Origin": "null"}, json={"file_name": f"{name}.yaml", "yaml_content": "a: 1\n"})
        assert null.status_code == 403
    assert not (storage.configs_dir / f"{name}.yaml").exists() and not (storage.datasets_dir / name).exists()


def test_allowed_same_origin_and_script_requests_keep_working(cors_api, platform, storage):
    name = f"cors-ok-{uuid.uuid4().hex[:6]}"
    token = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{cors_api}/experiment-config/create", headers={**token, "Origin": UI}, json={"file_name": f"{name}-a.yaml", "yaml_content": "a: 1\n"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == UI
    up = httpx.post(f"{cors_api}/dataset/upload", headers={**token, "Origin": OTHER_UI}, files={"file": ("d.zip", _zip(name), "application/zip")}, data={"name": name})
    assert up.status_code == 200, up.text
    own = cors_api  # a page the API itself served (/docs) posts with its own origin
    r = httpx.post(f"{own}/experiment-config/create", headers={**token, "Origin": own}, json={"file_name": f"{name}-b.yaml", "yaml_content": "a: 1\n"})
    assert r.status_code == 200 and cors_headers(r) == {}
    r = httpx.post(f"{platform.api_url}/experiment-config/create", headers={"Sec-Fetch-Site": "same-origin"}, json={"file_name": f"{name}-c.yaml", "yaml_content": "a: 1\n"})
    assert r.status_code == 200  # curl, scripts, Postman: no Origin
    assert all((storage.configs_dir / f"{name}-{s}.yaml").is_file() for s in "abc") and (storage.datasets_dir / name).is_dir()
    assert httpx.delete(f"{cors_api}/dataset/{name}", headers={**token, "Origin": UI}).status_code == 200


@pytest.mark.parametrize("variable,value,shown", [
    ("OPEVA_CORS_ORIGINS", "*", "'*' is not an origin"),
    ("OPEVA_CORS_ORIGINS", "http://ui-host:5173/app", "'http://ui-host:5173/app' is not an origin"),
    ("CORS_ALLOWED_ORIGINS", '["http://ui-host:5173", 3]', "must hold strings only"),
    ("CORS_ALLOWED_ORIGINS", '["http://ui-host:5173"', "not a JSON list of origins"),
])
def test_malformed_origin_list_refuses_to_start(platform, variable, value, shown):
    env = platform.env(**{variable: value})
    proc = subprocess.run([sys.executable, "-c", "import api.main"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "OPEVA_CORS_ORIGINS (or CORS_ALLOWED_ORIGINS) is malformed" in proc.stderr and shown in proc.stderr, proc.stderr[-800:]


def test_origin_settings_parse_both_names_and_forms(monkeypatch):
    from core.settings import PlatformSettings

    monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
    monkeypatch.setenv("OPEVA_CORS_ORIGINS", " http://UI-host:5173/ , https://ui.example.org:443,http://a:80")
    assert PlatformSettings().cors_origin_list == ("http://ui-host:5173", "https://ui.example.org", "http://a")
    monkeypatch.delenv("OPEVA_CORS_ORIGINS")
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", '["http://[::1]:3000"]')
    assert PlatformSettings().cors_origin_list == ("http://[::1]:3000",)
    monkeypatch.delenv("CORS_ALLOWED_ORIGINS")
    assert PlatformSettings().cors_origin_list == ()
