"""How a Slurm host's commands reach its cluster: on this machine, or over SSH to a login node.

Why one place: every Slurm command (sbatch, squeue, sacct, scontrol, sinfo, scancel) and every
file copy of a job without a shared file system (core/slurm_sync.py) goes through
:class:`Transport`, so the ssh options (batch mode, the host key check, the key, the port, a
ProxyCommand) are written once, and a remote command is always one shell-quoted string
(``shlex.join``): nothing a job or a user names is ever parsed by the login node's shell.

``submit: local`` keeps today's behaviour: the argument list runs as it is. ``submit:
ssh://user@login-node[:port]`` runs ``ssh -o BatchMode=yes ... user@login-node '<quoted command>'``.
No Prefect import: the API, the flows and the tests use it.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SSH_URL = re.compile(r"^ssh://(?P<user>[a-z_][a-z0-9_.-]{0,31})@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252})(?::(?P<port>[0-9]{1,5}))?/?$")
_REMOTE_PATH = re.compile(r"^/(?:[A-Za-z0-9_.+-]+/)*[A-Za-z0-9_.+-]+/?$")
_LOCAL_FILE = re.compile(r"^[^\x00-\x1f']+$")  # no control characters, no single quote (rsync's -e parser)
CONNECT_SECONDS = 10


def _remote_path(value: str, what: str) -> str:
    if not _REMOTE_PATH.fullmatch(value) or any(p in (".", "..") for p in value.split("/")):
        raise ValueError(f"{what} {value!r} must be an absolute path of letters, digits and _.+- (no '..')")
    return value.rstrip("/")


class SshOptions(BaseModel):
    """A Slurm host's ``slurm.ssh:`` block (``submit: ssh://...``): how to reach its login node."""

    model_config = ConfigDict(extra="forbid")
    remote_root: str = Field(description="the job folders' root on the login node's file system: jobs go to <remote_root>/jobs/<id>")
    identity_file: str | None = Field(None, description="the private key ssh uses (-i); None: ssh's own defaults")
    known_hosts_file: str | None = Field(None, description="UserKnownHostsFile; None: ssh's own (~/.ssh/known_hosts)")
    strict_host_key_checking: Literal["yes", "accept-new"] = Field(
        "yes", description="StrictHostKeyChecking: yes (the login node's key must be known) or accept-new (trust on first use)")
    port: int | None = Field(None, ge=1, le=65535, description="the login node's ssh port, when the submit URL names none (default 22)")
    proxy_command: str | None = Field(None, description="ProxyCommand, e.g. a jump host or a network namespace (docs/slurm.md)")
    project_root: str | None = Field(None, description="runtime none: where the platform's code is on the cluster (default: the same path as here)")
    connect_timeout: int = Field(CONNECT_SECONDS, ge=1, le=120, description="ConnectTimeout, seconds")
    multiplex_seconds: int = Field(60, ge=0, le=3600, description="ControlPersist: the host's commands share one ssh connection "
                                   "until this long after the last; 0: a connection per command")
    copier: Literal["auto", "rsync", "tar"] = Field("auto", description="how job folders are copied: rsync where both sides have it, else tar")

    @field_validator("remote_root")
    @classmethod
    def _root(cls, v: str) -> str:
        if v.strip("/") == "":
            raise ValueError("slurm.ssh.remote_root must not be / (the job folders go below it)")
        return _remote_path(v, "slurm.ssh.remote_root")

    @field_validator("project_root")
    @classmethod
    def _project(cls, v: str | None) -> str | None:
        return None if v is None else _remote_path(v, "slurm.ssh.project_root")

    @field_validator("identity_file", "known_hosts_file", "proxy_command")
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or not _LOCAL_FILE.fullmatch(v)):
            raise ValueError("must be non-empty, without control characters or single quotes")
        return v


def parse_submit(submit: str) -> tuple[str, str, int | None] | None:
    """``ssh://user@host[:port]`` -> (user, host, port); ``local`` -> None; anything else: ValueError."""
    if submit == "local":
        return None
    m = _SSH_URL.fullmatch(submit)
    if not m:
        raise ValueError(f"slurm.submit {submit!r}: expected 'local' or 'ssh://user@login-node[:port]'")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"slurm.submit {submit!r}: port {port} is out of range")
    return m["user"], m["host"], port


@dataclass(frozen=True)
class Transport:
    """Where a command runs: ``ssh is None`` on this machine, else on ``user@host`` over ssh."""

    user: str | None = None
    host: str | None = None
    port: int = 22
    ssh: SshOptions | None = None

    @classmethod
    def of(cls, submit: str, ssh: SshOptions | None) -> "Transport":
        target = parse_submit(submit)
        if target is None:
            return LOCAL
        if ssh is None:
            raise ValueError("slurm.submit is ssh://...: the host needs a slurm.ssh block (at least remote_root)")
        user, host, port = target
        if port is not None and ssh.port is not None and port != ssh.port:
            raise ValueError(f"slurm.submit names port {port} but slurm.ssh.port is {ssh.port}")
        return cls(user=user, host=host, port=port or ssh.port or 22, ssh=ssh)

    @property
    def remote(self) -> bool:
        return self.ssh is not None

    @property
    def where(self) -> str:
        """How messages name the side commands run on."""
        return f"{self.user}@{self.host}" if self.remote else "this machine"

    def ssh_options(self) -> list[str]:
        """``ssh`` and its options, without the destination (rsync's ``-e`` takes them as they are)."""
        assert self.ssh is not None
        o = self.ssh
        opts = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={o.connect_timeout}", "-o", f"StrictHostKeyChecking={o.strict_host_key_checking}",
                "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR", "-p", str(self.port)]
        if o.known_hosts_file:
            opts += ["-o", f"UserKnownHostsFile={o.known_hosts_file}"]
        if o.identity_file:
            opts += ["-o", "IdentitiesOnly=yes", "-i", o.identity_file]
        if o.proxy_command:
            opts += ["-o", f"ProxyCommand={o.proxy_command}"]
        if o.multiplex_seconds and (folder := control_dir()) is not None:
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={folder}/%C", "-o", f"ControlPersist={o.multiplex_seconds}"]
        return opts

    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    def argv(self, args: Sequence[str]) -> list[str]:
        """The argument list that runs ``args`` where this transport says: as it is locally; over
        ssh as ONE shell-quoted command string (the login shell splits it back into ``args``)."""
        if not self.remote:
            return list(args)
        return [*self.ssh_options(), self.destination(), shlex.join(args)]

    def rsync_shell(self) -> str:
        """rsync's ``-e``: the ssh command as one string (rsync splits it on spaces, honouring quotes)."""
        return shlex.join(self.ssh_options())


LOCAL = Transport()


def control_dir() -> str | None:
    """The private folder of ssh's shared connections (ControlPath), or None when it is not ours
    alone (made by someone else, a link, open to others): then each command connects on its own."""
    folder = Path(tempfile.gettempdir()) / f"opeva-ssh-mux-{os.geteuid()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return str(folder)
