"""The scaled layout's configuration (deployments/scaled.py), without starting it:
Prefect and prefect-redis read the variables it sets under the names it uses, haproxy
accepts its config, the compose file says the same, and each child gets only its secrets.
The layout itself runs in tests/e2e/test_scaled.py."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import yaml

from core.child_env import child_env
from deployments.platform import Platform
from deployments.platform import FOREMAN_LOOP_SECONDS, WORKER_HEARTBEAT_SECONDS
from deployments.scaled import COMPOSE_LAYOUT, Layout, ScaleSettings, compose_haproxy_config, haproxy_config, redis_env

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://default:pw@127.0.0.1:6390/0"


def test_the_default_is_the_single_server():
    with mock.patch.dict(os.environ, {}, clear=False):
        for name in ("OPEVA_PREFECT_SERVERS", "OPEVA_API_REPLICAS"):
            os.environ.pop(name, None)
        scale = ScaleSettings()
    assert not scale.scaled and not scale.balanced
    assert Layout.plan(scale) == Layout([], [])
    with mock.patch.dict(os.environ, {"OPEVA_PREFECT_SERVERS": "3", "OPEVA_API_REPLICAS": "2"}):
        layout = Layout.plan(ScaleSettings())
    assert len(layout.server_ports) == 3 and len(layout.api_ports) == 2


def test_prefect_and_prefect_redis_read_every_variable_under_these_names():
    """A misspelt name would be ignored silently and the servers would keep per-process state."""
    from prefect.settings import Settings
    from prefect_redis.client import RedisMessagingSettings

    env = redis_env(REDIS_URL)
    with mock.patch.dict(os.environ, env):
        server = Settings().server
        assert server.events.messaging_broker == "prefect_redis.messaging"
        assert server.events.messaging_cache == "prefect_redis.messaging"
        assert server.events.causal_ordering == "prefect_redis.ordering"
        assert server.concurrency.lease_storage == "prefect_redis.lease_storage"
        assert server.docket.url == REDIS_URL
        assert RedisMessagingSettings().url == REDIS_URL
    for module in {v for k, v in env.items() if v.startswith("prefect_redis.")}:
        importlib.import_module(module)


def test_haproxy_accepts_the_config_it_is_given(tmp_path):
    assert shutil.which("haproxy"), "apt-get install haproxy (.ci/run installs it)"
    platform = Platform(home=tmp_path, prefect_port=4300, mongo_port=1, api_port=8300, data_dir=tmp_path)
    for layout in (Layout([4301, 4302], [8301, 8302]), Layout([4301, 4302], []), Layout([], [8301, 8302])):
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(haproxy_config(platform, layout, None))
        out = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        text = cfg.read_text()
        assert ("bind 127.0.0.1:4300" in text) == bool(layout.server_ports) and ("bind 127.0.0.1:8300" in text) == bool(layout.api_ports)
        assert "0.0.0.0" not in text and "retry-on conn-failure empty-response" in text


def test_the_compose_file_describes_the_same_layout():
    assert (ROOT / "deployments" / "haproxy.cfg").read_text() == compose_haproxy_config(), "run python -m deployments.scaled"
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    servers = [n for n in services if n.startswith("prefect-server-")]
    apis = [n for n in services if n.startswith("api-")]
    assert len(servers) == len(COMPOSE_LAYOUT.server_ports) and len(apis) == len(COMPOSE_LAYOUT.api_ports)
    for name in [*servers, "prefect-services", "prefect-migrate"]:
        env = services[name]["environment"]
        for key, value in redis_env(REDIS_URL).items():
            assert key in env, (name, key)
            if not key.endswith("_URL"):
                assert env[key] == value, (name, key)
        assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
    for name in servers:
        assert "--no-services" in services[name]["command"]
    assert [services[n]["environment"]["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] for n in servers] == ["true"] + ["false"] * (len(servers) - 1)
    assert services["prefect-services"]["command"] == "prefect server services start"
    assert "maxmemory-policy noeviction" in " ".join(services["redis"]["command"]) and "127.0.0.1" in " ".join(services["redis"]["command"])
    # a lost host is seen offline as fast as with `make up` (issue 22: <= 35 s)
    assert services["prefect-services"]["environment"]["PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS"] == FOREMAN_LOOP_SECONDS
    host_compose = yaml.safe_load((ROOT / "docker-compose.host.yml").read_text())["services"]
    workers = [s for s in [*services.values(), *host_compose.values()] if "worker start" in str(s.get("command"))]
    assert len(workers) >= 3 and all(w["environment"]["PREFECT_WORKER_HEARTBEAT_SECONDS"] == WORKER_HEARTBEAT_SECONDS for w in workers)
    # on PostgreSQL Prefect's pool limit alone lets a third run in (FOR UPDATE SKIP LOCKED): every host's worker holds it too
    assert all("--limit" in w["command"] for w in workers if "--type docker" in w["command"])


def test_each_child_of_the_scaled_layout_gets_only_its_secrets():
    env = {**redis_env(REDIS_URL), "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://p:pw@h/db",
           "PREFECT_API_AUTH_STRING": "opeva:x", "OPEVA_API_TOKENS": "alice:t", "MONGO_URI": "mongodb://u:p@h"}
    for server in ("prefect-server", "prefect-server-2", "prefect-services"):
        got = child_env(server, env)
        assert got["PREFECT_REDIS_MESSAGING_URL"] == REDIS_URL and got["PREFECT_SERVER_DOCKET_URL"] == REDIS_URL, server
        assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" in got and "OPEVA_API_TOKENS" not in got, server
    for api in ("api", "api-2"):
        got = child_env(api, env)
        assert got["OPEVA_API_TOKENS"] == "alice:t" and "PREFECT_REDIS_MESSAGING_URL" not in got and "PREFECT_SERVER_DOCKET_URL" not in got
    for other in ("worker-local", "redis", "haproxy", "setup"):
        got = child_env(other, env)
        assert not {"PREFECT_REDIS_MESSAGING_URL", "PREFECT_SERVER_DOCKET_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL"} & set(got), other
        assert got["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"  # plain settings pass
