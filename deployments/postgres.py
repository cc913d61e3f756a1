"""A private PostgreSQL cluster for the Prefect server, from Debian's binaries.

Why: SQLite serialises every write of the Prefect server ("database is locked"
under bursts, Prefect #10188); PostgreSQL is what production runs (docker-compose.yml).
`make up` with ``OPEVA_DATABASE=postgres`` and the PostgreSQL e2e test start one
cluster in ``<home>/postgres`` on a loopback port, owned by an unprivileged user
(PostgreSQL refuses to run as root), so the production database is exercised
without a system service. ``OPEVA_PREFECT_DB_URL`` points at an existing database instead.

Logins need a password (``scram-sha-256``, local socket and TCP alike; no ``trust``): a
job or any other local program that reaches the port gets nothing without it. The
password is generated at the first start and kept in ``<home>/postgres/password`` (0600,
the platform's user); only the Prefect server's URL carries it. A cluster made by an
older version with ``trust`` is moved to passwords when it starts.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from deployments.file_modes import private_secret

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
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def password(self) -> str:
        """Made once (0600, created exclusively: never a file someone else placed), then read."""
        return private_secret(self.password_file, lambda: secrets.token_urlsafe(32))

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{DB_NAME}"

    def _run(self, *args: str, password: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"LC_ALL": "C.UTF-8", "PGHOST": "127.0.0.1", "PGPORT": str(self.port)})
        if password:
            env["PGPASSWORD"] = self.password  # this child only, never the platform's environment
        return subprocess.run(list(args), capture_output=True, text=True, cwd="/", **drop_to(self.user), env=env)

    def init(self) -> None:
        """Create the cluster on first use: scram-sha-256 passwords, loopback only."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            home = self.root.parent  # ours (the platform's home): let the account pass through it
            os.chmod(home, home.stat().st_mode | 0o001)
            blocked = [str(p) for p in home.parents if not p.stat().st_mode & 0o001]
            if blocked:
                raise RuntimeError(f"the {self.user!r} account cannot reach {self.root}: no search permission on {blocked[0]}; "
                                   "set OPEVA_HOME to a directory under a world-searchable path (or OPEVA_PREFECT_DB_URL)")
        os.chmod(self.root, 0o700)
        pwfile = self.root / ".initdb-password"  # initdb runs as the unprivileged account: its own copy, gone after
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        if self.user:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        try:
            out = self._run(str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", DB_USER, "-A", "scram-sha-256",
                            f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", password=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")

    @property
    def hba_file(self) -> Path:
        return self.data_dir / "pg_hba.conf"

    def trusts(self) -> bool:
        """An older cluster (``initdb -A trust``): logins without a password."""
        lines = [line.split() for line in self.hba_file.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return any(fields and fields[-1] == "trust" for fields in lines)

    def require_passwords(self, postmaster_pid: int) -> None:
        """Move a ``trust`` cluster to scram, once, while it runs: set the password (trust
        still lets us in), rewrite pg_hba.conf, reload the server."""
        if not self.trusts():
            return
        out = self._run(str(self.bindir / "psql"), "-U", DB_USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                        "SET password_encryption = 'scram-sha-256'", "-c", f"ALTER ROLE {DB_USER} PASSWORD '{self.password}'", password=False)
        if out.returncode != 0:
            raise RuntimeError(f"setting the PostgreSQL password failed: {out.stderr.strip()}")
        text = "\n".join(
            " ".join([*line.split()[:-1], "scram-sha-256"]) if line.split() and not line.lstrip().startswith("#") and line.split()[-1] == "trust" else line
            for line in self.hba_file.read_text().splitlines()
        )
        tmp = self.hba_file.with_suffix(".opeva-tmp")
        tmp.write_text(text + "\n")
        st = self.hba_file.stat()
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.hba_file)
        os.kill(postmaster_pid, signal.SIGHUP)  # pg_hba.conf is re-read on reload

    def command(self) -> list[str]:
        settings = [arg for key, value in SERVER_SETTINGS.items() for arg in ("-c", f"{key}={value}")]
        return [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-k", str(self.root), *settings]

    def ready(self) -> bool:
        return self._run(str(self.bindir / "pg_isready"), "-q", "-d", "postgres", "-U", DB_USER, password=False).returncode == 0

    def create_database(self) -> None:
        listed = self._run(str(self.bindir / "psql"), "-U", DB_USER, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'")
        if listed.stdout.strip() == "1":
            return
        out = self._run(str(self.bindir / "createdb"), "-U", DB_USER, DB_NAME)
        if out.returncode != 0:
            raise RuntimeError(f"createdb failed: {out.stderr.strip()}")
