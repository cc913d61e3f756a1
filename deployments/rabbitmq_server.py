"""A private RabbitMQ for live site data (``WS /ws/data``), from Debian's ``rabbitmq-server``.

Why: the OPEVA sites publish their readings to RabbitMQ fanout exchanges and the UI's live
charts read them through the API (docs/live-data.md). When ``OPEVA_AMQP_URL`` names no
broker, ``make up`` runs this one, and the tests do too, so the relay is always exercised
against a real broker.

What makes it private (nothing shared with a system RabbitMQ or another platform):
- its own node name, Mnesia and log folders, config and plugin list under ``<home>/rabbitmq``
  (no management plugin: nothing but AMQP listens);
- its own Erlang cookie (``.erlang.cookie``, 0400) and its own ``epmd`` on a free port, run
  as a supervised child: Erlang would otherwise start a system-wide ``epmd`` daemon on 4369
  that outlives the platform;
- AMQP, the Erlang distribution port and ``epmd`` listen on 127.0.0.1 only;
- one user with a generated password (``<home>/rabbitmq/password``, 0600; in the config file,
  never on a command line); RabbitMQ's ``guest`` account is not created;
- as root it runs as Debian's unprivileged ``rabbitmq`` account.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote
from deployments.file_modes import private_secret

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's wrapper in /usr/sbin insists on su and /var/lib
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
NODE = "opeva@localhost"  # private epmd: the same name in two platforms cannot clash
USER = "opeva"


def run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("rabbitmq", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged 'rabbitmq' account exists")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class LocalRabbit:
    """One broker in ``root``: AMQP on ``port``, ``epmd`` and distribution on free ports."""

    def __init__(self, root: Path, port: int) -> None:
        if not (os.path.exists(SERVER) and shutil.which("epmd")):
            raise FileNotFoundError("rabbitmq-server not found: apt-get install rabbitmq-server")
        self.root = root
        self.port = port
        self.epmd_port = _free_port()
        self.dist_port = _free_port()
        self.user = run_as()

    @property
    def password(self) -> str:
        return private_secret(self.root / "password")

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/"

    @property
    def shown_url(self) -> str:
        """For banners and logs: the password stays in its file."""
        return f"amqp://{USER}:***@127.0.0.1:{self.port}/"

    def init(self) -> None:
        """Config, plugin list and cookie; the folder and its files belong to the account RabbitMQ runs as."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = self.password
        _write_private(self.root / "rabbitmq.conf", "\n".join([
            f"default_user = {USER}", f"default_pass = {password}", "default_vhost = /",
            "default_permissions.configure = .*", "default_permissions.read = .*", "default_permissions.write = .*",
            "vm_memory_high_watermark.absolute = 512MB",  # publishers are blocked, loudly, past it
            "log.console = true", "log.console.level = warning", "log.file = false",
        ]) + "\n")
        _write_private(self.root / "enabled_plugins", "[].\n")
        cookie = self.root / ".erlang.cookie"
        if not cookie.exists():
            _write_private(cookie, secrets.token_hex(20).upper(), 0o400)
        if self.user:
            entry = pwd.getpwnam(self.user)
            home = self.root.parent
            os.chmod(home, home.stat().st_mode | 0o001)  # let the account pass through the platform's home
            for dirpath, _dirs, files in os.walk(self.root):
                os.chown(dirpath, entry.pw_uid, entry.pw_gid)
                for name in files:
                    os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def env(self) -> dict[str, str]:
        """RabbitMQ's and Erlang's variables (no secret among them: those sit in files)."""
        r = self.root
        return {
            "HOME": str(r),  # Erlang reads the cookie from $HOME/.erlang.cookie
            "RABBITMQ_CONF_ENV_FILE": str(r / "rabbitmq-env.conf"),  # absent: /etc/rabbitmq's is not read
            "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"), "RABBITMQ_ADVANCED_CONFIG_FILE": str(r / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"), "RABBITMQ_LOG_BASE": str(r / "log"), "RABBITMQ_PID_FILE": str(r / "rabbitmq.pid"),
            "RABBITMQ_NODENAME": NODE, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false",
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false",
            "ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def epmd_command(self) -> list[str]:
        return [shutil.which("epmd") or "epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"]

    def command(self) -> list[str]:
        return [SERVER]

    def epmd_ready(self) -> bool:
        return _connects(self.epmd_port)

    def ready(self) -> bool:
        """The AMQP handshake's first answer: the broker sends Connection.Start (method 10,10)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(11)[7:11] == b"\x00\x0a\x00\x0a"
        except OSError:
            return False

    def ctl(self, *args: str, timeout: float = 30) -> str:
        """``rabbitmqctl`` against this node (its cookie and epmd); the operators' way in, and the tests'."""
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **self.env()}
        out = subprocess.run([CTL, "-n", NODE, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
        return out.stdout

    def queues(self) -> list[str]:
        return [line.split("\t")[0] for line in self.ctl("list_queues", "-q", "--no-table-headers", "name").splitlines() if line.strip()]


def _connects(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_rabbitmq(platform, port: int | None = None) -> LocalRabbit:  # noqa: ANN001 (deployments.platform.Platform)
    """``epmd`` then the broker, as supervised children of ``platform``; returns once AMQP answers."""
    rabbit = LocalRabbit(platform.home / "rabbitmq", port or _free_port())
    rabbit.init()
    if _connects(rabbit.port):
        from deployments.platform import StartupError

        raise StartupError(f"port {rabbit.port} is taken: set OPEVA_AMQP_PORT to a free port, or OPEVA_AMQP_URL to use that broker")
    platform.start("epmd", rabbit.epmd_command(), rabbit.epmd_ready, timeout=15, user=rabbit.user, **rabbit.env())
    platform.start("rabbitmq", rabbit.command(), rabbit.ready, timeout=90, user=rabbit.user, **rabbit.env())
    return rabbit


def shown(url: str) -> str:
    """``amqp://user:secret@host/`` -> ``amqp://user:***@host/``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{netloc[0].split(':', 1)[0]}:***@{netloc[1]}").geturl()


def ensure_broker(platform, settings) -> tuple[str, str]:  # noqa: ANN001 (Platform, PlatformSettings)
    """(URL, URL for the banner): ``OPEVA_AMQP_URL`` when set, else a private broker on ``OPEVA_AMQP_PORT``."""
    if settings.amqp_url:
        return settings.amqp_url, f"{shown(settings.amqp_url)}   (OPEVA_AMQP_URL)"
    print("Starting RabbitMQ for live site data...", flush=True)
    rabbit = start_rabbitmq(platform, settings.amqp_port or None)
    return rabbit.url, f"{rabbit.shown_url}   (password: {rabbit.root / 'password'})"
