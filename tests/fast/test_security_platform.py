"""The platform's own secrets and files: PostgreSQL with scram passwords (no trust login
from the host, attack 2 of issue 21), private file modes, and the Prefect server patch's
guards (version check, bounded lock wait, refused where it would be a no-op)."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT
from deployments.platform import Platform, free_port
from deployments.postgres import DB_USER, LocalPostgres, drop_to


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_platform_home_keeps_its_files_private(platform):
    """prefect.db, the auth string, the service logs (the worker's among them): 0600 in 0700 folders."""
    prefect_home = platform.home / "prefect"
    assert mode(prefect_home) == 0o700 and mode(platform.logs_dir) == 0o700 and mode(platform.home / "mongo") == 0o700
    assert mode(prefect_home / "auth_string") == 0o600
    dbs = list(prefect_home.glob("*.db"))
    assert dbs and all(mode(db) & 0o077 == 0 for db in dbs), [(db, oct(mode(db))) for db in dbs]
    logs = list(platform.logs_dir.glob("*.log"))
    assert logs and all(mode(log) == 0o600 for log in logs), [(log.name, oct(mode(log))) for log in logs]


def test_private_dir_repairs_an_old_home_and_refuses_a_link(tmp_path):
    from deployments.file_modes import open_private_log, private_dir

    old = tmp_path / "logs"
    old.mkdir(mode=0o755)
    (old / "worker.log").write_text("x")
    os.chmod(old / "worker.log", 0o644)
    private_dir(old)
    assert mode(old) == 0o700 and mode(old / "worker.log") == 0o600
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RuntimeError):
        private_dir(tmp_path / "linked")
    (old / "api.log").symlink_to(tmp_path / "victim")
    with pytest.raises(OSError):
        open_private_log(old / "api.log")
    assert not (tmp_path / "victim").exists()


# -- PostgreSQL ------------------------------------------------------------------------------

def _psql(pg: LocalPostgres, *args: str, password: str | None, user: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run([str(pg.bindir / "psql"), "-w", "-d", "postgres", "-tAc", "SELECT current_user", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd="/", **drop_to(user))


@pytest.fixture(scope="module")
def pg_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="opeva-pgsec-"))


def _start(home: Path) -> tuple[Platform, LocalPostgres]:
    platform = Platform(home=home, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=home / "data")
    url = platform.start_postgres()
    pg = LocalPostgres(home / "postgres", int(url.rsplit(":", 1)[1].split("/")[0]))
    return platform, pg


def test_postgresql_refuses_a_loopback_login_without_the_password(pg_home):
    platform, pg = _start(pg_home)
    try:
        assert f"{DB_USER}:{pg.password}@" in platform.database_url
        assert mode(pg.password_file) == 0o600 and mode(pg.root) == 0o700 and len(pg.password) >= 32
        tcp = ("-h", "127.0.0.1", "-p", str(pg.port), "-U", DB_USER)
        for as_user in (None, pg.user):  # root (this process), and PostgreSQL's own account
            refused = _psql(pg, *tcp, password=None, user=as_user)
            assert refused.returncode != 0 and "password" in refused.stderr, refused.stderr
        wrong = _psql(pg, *tcp, password="guess")
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
        socket_login = _psql(pg, "-h", str(pg.root), "-p", str(pg.port), "-U", DB_USER, password=None, user=pg.user)
        assert socket_login.returncode != 0, socket_login.stdout  # the local socket asks too
        ok = _psql(pg, *tcp, password=pg.password)
        assert ok.returncode == 0 and ok.stdout.strip() == DB_USER, ok.stderr
        assert "trust" not in [line.split()[-1] for line in pg.hba_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    finally:
        platform.stop()


def test_a_trust_cluster_of_an_older_version_is_moved_to_passwords(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="opeva-pgold-"))
    pg = LocalPostgres(home / "postgres", free_port())
    pg.root.mkdir(parents=True)
    if pg.user:
        import pwd

        os.chown(pg.root, pwd.getpwnam(pg.user).pw_uid, pwd.getpwnam(pg.user).pw_gid)
        os.chmod(home, 0o711)
    made = pg._run(str(pg.bindir / "initdb"), "-D", str(pg.data_dir), "-U", DB_USER, "-A", "trust", "-E", "UTF8", "--locale=C", password=False)
    assert made.returncode == 0, made.stderr
    assert pg.trusts()
    platform, pg = _start(home)
    try:
        assert not pg.trusts()
        import time

        time.sleep(1)  # the reload is asynchronous
        refused = _psql(pg, "-h", "127.0.0.1", "-p", str(pg.port), "-U", DB_USER, password=None)
        assert refused.returncode != 0, refused.stdout
        assert _psql(pg, "-h", "127.0.0.1", "-p", str(pg.port), "-U", DB_USER, password=pg.password).returncode == 0
    finally:
        platform.stop()


# -- the Prefect server patch ------------------------------------------------------------------

def _server(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployments.prefect_server", "server", "start", *args], cwd=PROJECT_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("--workers", "2"), ("--workers=3",), ("--background",)])
def test_the_patch_refuses_where_it_would_be_a_no_op(args):
    out = _server("--port", str(free_port()), *args)
    assert out.returncode == 2 and "refused" in out.stderr and "OPEVA_PREFECT_PATCHES=0" in out.stderr, out.stderr[-500:]


def test_the_patch_refuses_an_unknown_prefect_version(monkeypatch):
    import prefect

    from deployments import prefect_server

    monkeypatch.setattr(prefect, "__version__", "9.9.9")
    with pytest.raises(prefect_server.PatchRefused, match="not 9.9.9"):
        prefect_server.check_patchable(["server", "start"])
    assert _server("--port", "1", OPEVA_SQLITE_LOCK_WAIT="forever").returncode == 2


def test_a_write_waits_a_bounded_time_for_the_queue(monkeypatch):
    """A writer behind one that holds the queue gets SQLite's 'database is locked' (a 503 the
    client retries) after OPEVA_SQLITE_LOCK_WAIT, not a hang; the holder is unaffected."""
    import sqlalchemy.exc
    from prefect.server.database import configurations

    from deployments import prefect_server

    monkeypatch.setattr(configurations.AioSqliteConfiguration, "begin_transaction", configurations.AioSqliteConfiguration.begin_transaction)
    prefect_server.sqlite_writes_immediate(0.3)
    begin = configurations.AioSqliteConfiguration.begin_transaction

    class Session:  # a session whose transaction lasts as long as the test says
        def __init__(self, release: asyncio.Event) -> None:
            self.release = release

        def begin(self):
            release = self.release

            class Tx:
                async def __aenter__(self):
                    return self

                async def __aexit__(self, *exc):
                    await release.wait()

            return Tx()

    async def main() -> tuple[str, float]:
        release = asyncio.Event()
        holding = asyncio.Event()

        async def holder() -> None:
            async with begin(None, Session(release)):
                holding.set()

        task = asyncio.create_task(holder())
        await holding.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with begin(None, Session(release)):
                outcome = "entered"
        except sqlalchemy.exc.OperationalError as exc:
            outcome = str(exc.orig)
        waited = loop.time() - started
        release.set()
        await task
        async with begin(None, Session(release)):  # the queue works again
            pass
        return outcome, waited

    outcome, waited = asyncio.run(main())
    assert outcome == "database is locked" and 0.25 <= waited < 5, (outcome, waited)
    source = (PROJECT_ROOT / "deployments" / "prefect_server.py").read_text()
    assert "sqlprof" not in source and "/tmp/" not in source  # no temporary profiling import
