"""The two ways the platform is run, for the adversarial suite (issue 21, "in both modes").

- ``open-sqlite``: auth off, the Prefect server on SQLite: ``make up``'s default, the e2e
  session's platform.
- ``tokens-postgres``: bearer tokens on (alice and bob are runners, ops is the admin), the
  Prefect server on a private PostgreSQL cluster with scram passwords (as ``make up`` with
  ``OPEVA_DATABASE=postgres``), its own MongoDB-wire server, a Docker worker and the API.

Each attack asks its :class:`Target` for the API (a client holding a runner's token when
tokens are on), the data root, the platform's service ports a job must not reach, and
every secret of the mode a job must never read (Prefect's auth string; with PostgreSQL
its password; with tokens every API token).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.layout import DataRoot
from deployments.platform import Platform
from deployments.postgres import LocalPostgres
from helpers import hosts_yaml, new_platform, pointed_at

MODES = ("open-sqlite", "tokens-postgres")
TOKENS = {"alice": "alice-runner-token-7f3a9c", "bob": "bob-runner-token-2d81e4", "ops": "ops-admin-token-c95b17"}


@dataclass
class Target:
    mode: str
    platform: Platform
    storage: DataRoot
    token: str | None = None  # the attacker's (alice, a runner, not an admin); None with auth off
    secrets: list[str] = field(default_factory=list)

    def client(self, user: str | None = None) -> httpx.Client:
        token = TOKENS[user] if user else self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.platform.api_url, timeout=30, headers=headers)

    @property
    def ports(self) -> dict[str, int]:
        """The platform's loopback services (a job must reach none)."""
        ports = {"prefect": self.platform.prefect_port, "mongo": self.platform.mongo_port, "api": self.platform.api_port}
        if self.platform.database_url:
            ports["postgres"] = pg_port(self.platform)
        return ports


def pg_port(platform: Platform) -> int:
    return int(platform.database_url.rsplit(":", 1)[1].split("/")[0])


def open_sqlite(platform: Platform) -> Target:
    return Target("open-sqlite", platform, DataRoot(platform.data_dir), secrets=[platform.prefect_auth_string.split(":", 1)[1]])


@contextmanager
def tokens_postgres() -> Iterator[Target]:
    """A second platform, tokens + PostgreSQL, with the e2e hosts (a worker on ``local``);
    this test process's Prefect client points at it while it runs."""
    home = Path(tempfile.mkdtemp(prefix="opeva-attacks-pg-"))
    platform = new_platform(home)
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(hosts_yaml(platform.data_dir))
    with pointed_at(platform, hosts_file):
        try:
            platform.start_postgres()
            platform.start_prefect_server()
            platform.start_mongo()
            types = platform.setup_pools(hosts_file, docker=True)
            platform.start_worker("local", types["local"])
            platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file), MONGO_URI=platform.mongo_uri,
                               OPEVA_API_TOKENS=",".join(f"{u}:{t}" for u, t in TOKENS.items()),
                               OPEVA_API_RUNNERS="alice,bob", OPEVA_API_ADMINS="ops")
            password = LocalPostgres(home / "postgres", pg_port(platform)).password
            yield Target("tokens-postgres", platform, DataRoot(platform.data_dir), token=TOKENS["alice"],
                         secrets=[platform.prefect_auth_string.split(":", 1)[1], password, *TOKENS.values()])
        finally:
            platform.stop()
