"""A private Redis for the scaled control plane, from Debian's ``redis-server``.

Why: with more than one Prefect API server, events, the event cache, causal ordering,
concurrency leases and Docket's background tasks must be shared between processes;
Prefect keeps them in memory unless ``prefect-redis`` points them at a Redis
(deployments/scaled.py sets the variables). This Redis listens on loopback only, needs
a password (generated once, ``<home>/redis/password``, 0600; it sits in the config
file, never on a command line), has a ``maxmemory`` bound and ``noeviction`` (a full
Redis refuses writes, loudly, rather than silently dropping Prefect's streams), and runs
as Debian's unprivileged ``redis`` account when we are root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from deployments.file_modes import private_secret

MAXMEMORY = os.environ.get("OPEVA_REDIS_MAXMEMORY", "256mb")


def run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("redis", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged 'redis' account exists")


class LocalRedis:
    """One server in ``root``: its config (0600, the password in it), its append-only file."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.user = run_as()
        exe = shutil.which("redis-server")
        if not exe:
            raise FileNotFoundError("redis-server not found: apt-get install redis-server")
        self.exe = exe

    @property
    def password(self) -> str:
        return private_secret(self.root / "password")

    @property
    def url(self) -> str:
        return f"redis://default:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def config_file(self) -> Path:
        return self.root / "redis.conf"

    def init(self) -> None:
        """Write the config; the directory and config belong to the account Redis runs as."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = self.password
        text = "\n".join([
            "bind 127.0.0.1", "protected-mode yes", f"port {self.port}", f"requirepass {password}",
            f"maxmemory {MAXMEMORY}", "maxmemory-policy noeviction",
            f"dir {self.root}", "appendonly yes", "appendfsync everysec", 'save ""',
            "daemonize no", "logfile \"\"", "loglevel warning",
            "rename-command CONFIG \"\"", "rename-command DEBUG \"\"",  # no runtime reconfiguration through the port
        ]) + "\n"
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if self.user:
            entry = pwd.getpwnam(self.user)
            home = self.root.parent
            os.chmod(home, home.stat().st_mode | 0o001)  # let the account pass through the platform's home
            for path in (self.root, self.config_file, *self.root.glob("appendonly*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            for path in self.root.glob("appendonlydir/*"):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def command(self) -> list[str]:
        return [self.exe, str(self.config_file)]

    def ready(self) -> bool:
        """PING with the password (redis-cli reads it from REDISCLI_AUTH, not argv)."""
        cli = shutil.which("redis-cli")
        if cli:
            out = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(self.port), "ping"], capture_output=True, text=True,
                                 env={"PATH": os.environ.get("PATH", ""), "REDISCLI_AUTH": self.password})
            return out.stdout.strip() == "PONG"
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                return b"PONG" in s.recv(64)
        except OSError:
            return False
