"""A private PostgreSQL cluster for the Prefect server, from Debian's binaries.

Why: SQLite serialises every write of the Prefect server ("database is locked"
under bursts, Prefect #10188); PostgreSQL is what production runs (docker-compose.yml).
`make up` with ``OPEVA_DATABASE=postgres`` and the PostgreSQL e2e test start one
cluster in ``<home>/postgres`` on a loopback port, owned by an unprivileged user
(PostgreSQL refuses to run as root), so the production database is exercised
without a system service. ``OPEVA_PREFECT_DB_URL`` points at an existing database instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DB_NAME = "prefect"
DB_USER = "prefect"
# Server-side settings tuned for a burst of submissions on a small machine; durability
# stays on (fsync, synchronous_commit) because this is the production database path.
SERVER_SETTINGS = {"max_connections": "200", "shared_buffers": "128MB", "listen_addresses": "127.0.0.1"}


class DatabaseSettings(BaseSettings):
    """``OPEVA_DATABASE`` (sqlite | postgres) and ``OPEVA_PREFECT_DB_URL`` (an existing database)."""

    model_config = SettingsConfigDict(env_prefix="OPEVA_", extra="ignore")

    database: str = Field("sqlite", pattern="^(sqlite|postgres)$", description="Prefect server database for make up.")
    prefect_db_url: str = Field("", description="postgresql+asyncpg://user:password@host:port/db; overrides OPEVA_DATABASE.")


def pg_bindir() -> Path:
    """Debian keeps the server binaries (postgres, initdb) off PATH, under /usr/lib/postgresql/<major>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("postgres") or shutil.which("initdb")
    if exe:
        return Path(exe).resolve().parent
    raise FileNotFoundError("PostgreSQL server binaries not found: apt-get install postgresql")


def run_as() -> str | None:
    """The unprivileged account to run PostgreSQL as when we are root (Debian's package creates ``postgres``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged 'postgres' account exists")


def drop_to(user: str | None) -> dict:
    """Popen arguments that run a child as ``user`` with that user's own group only
    (``user=`` alone keeps root's groups, and group bits then deny what "other" allows)."""
    if not user:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


class LocalPostgres:
    """One cluster: ``initdb`` once, then ``postgres`` as a supervised child of the platform."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.bindir = pg_bindir()
        self.user = run_as()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, cwd="/", **drop_to(self.user),
                              env={**os.environ, "LC_ALL": "C.UTF-8", "PGHOST": "127.0.0.1", "PGPORT": str(self.port)})

    def init(self) -> None:
        """Create the cluster on first use; trust auth, loopback only (the embedded set-up's rule)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            home = self.root.parent  # ours (the platform's home): let the account pass through it
            os.chmod(home, home.stat().st_mode | 0o001)
            blocked = [str(p) for p in home.parents if not p.stat().st_mode & 0o001]
            if blocked:
                raise RuntimeError(f"the {self.user!r} account cannot reach {self.root}: no search permission on {blocked[0]}; "
                                   "set OPEVA_HOME to a directory under a world-searchable path (or OPEVA_PREFECT_DB_URL)")
        out = self._run(str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", DB_USER, "-A", "trust", "-E", "UTF8", "--locale=C")
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")

    def command(self) -> list[str]:
        settings = [arg for key, value in SERVER_SETTINGS.items() for arg in ("-c", f"{key}={value}")]
        return [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-k", str(self.root), *settings]

    def ready(self) -> bool:
        return self._run(str(self.bindir / "pg_isready"), "-q", "-d", "postgres", "-U", DB_USER).returncode == 0

    def create_database(self) -> None:
        listed = self._run(str(self.bindir / "psql"), "-U", DB_USER, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'")
        if listed.stdout.strip() == "1":
            return
        out = self._run(str(self.bindir / "createdb"), "-U", DB_USER, DB_NAME)
        if out.returncode != 0:
            raise RuntimeError(f"createdb failed: {out.stderr.strip()}")
