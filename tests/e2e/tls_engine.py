"""A second Docker engine for tests/e2e/test_tls_engine.py: dockerd with its own data and exec
roots, listening on a unix socket of its own and on TLS TCP on loopback only (client
certificates required), with certificates made by openssl for this run.

Why a real engine: the point is that the API reaches a host's engine over TLS with the
hosts file's certificates, and says so when it cannot; only a real ``dockerd --tlsverify``
refuses a client without a certificate the way a remote host would. It never touches the
default engine: no bridge, no iptables, its own roots, stopped and removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deployments.platform import free_port

START_SECONDS = 60


@dataclass(frozen=True)
class TlsEngine:
    url: str  # tcp://127.0.0.1:<port>
    socket: str  # unix://<root>/d.sock, for the test's own docker CLI calls
    ca_cert: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {out.stderr[-1000:]}")


def make_certificates(d: Path) -> None:
    """ca.pem; server.pem/server-key.pem for IP 127.0.0.1; client.pem/client-key.pem (EC keys: fast)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1", "-subj", "/CN=opeva-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, cn, ext in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                          ("client", "opeva-api", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)


def _answers(socket: str) -> bool:
    return subprocess.run(["docker", "-H", socket, "version"], capture_output=True).returncode == 0


@contextmanager
def tls_engine() -> Iterator[TlsEngine]:
    """Start the engine (a few seconds), yield it, then stop it and remove its roots."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="otls-", dir="/tmp"))  # short: the exec root holds unix sockets
    proc = None
    try:
        certs = root / "certs"
        certs.mkdir()
        make_certificates(certs)
        (root / "daemon.json").write_text("{}")  # not /etc/docker/daemon.json: nothing of the default engine's settings
        port, socket = free_port(), f"unix://{root}/d.sock"
        cmd = ["dockerd", "--config-file", str(root / "daemon.json"), "--data-root", str(root / "data"), "--exec-root", str(root / "x"),
               "--pidfile", str(root / "d.pid"), "-H", socket, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
               "--tlscacert", str(certs / "ca.pem"), "--tlscert", str(certs / "server.pem"), "--tlskey", str(certs / "server-key.pem"),
               "--bridge=none", "--iptables=false", "--ip-masq=false"]
        with open(root / "dockerd.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while not _answers(socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the second dockerd did not answer: {(root / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield TlsEngine(f"tcp://127.0.0.1:{port}", socket, certs / "ca.pem", certs / "client.pem", certs / "client-key.pem")
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the engine we started (its own session: its containerd goes with it), SIGKILL after 20 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def build_tiny_image(socket: str | None, ref: str, context: Path) -> None:
    """``FROM scratch`` plus one small file: built on the engine at ``socket`` (None: the default one) with nothing pulled."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "hello.txt").write_text(f"{ref}\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    out = subprocess.run(["docker", *(["-H", socket] if socket else []), "build", "-q", "-t", ref, str(context)], capture_output=True, text=True,
                         env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if out.returncode != 0:
        raise RuntimeError(f"docker build of {ref} on {socket} failed: {out.stderr[-2000:]}")
