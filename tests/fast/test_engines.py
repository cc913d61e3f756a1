"""core.engines and a host's ``docker_tls``: what hosts.yaml accepts, and what the one client
factory asks docker-py for (the real TLS engine is reached in tests/e2e/test_tls_engine.py)."""

from __future__ import annotations

import pytest
from docker.errors import DockerException
from docker.tls import TLSConfig
from pydantic import ValidationError

from core.engines import LOCAL_ENGINE, DockerTLS, Engine, client_kwargs, open_client
from core.hosts import Host, load_hosts
from deployments.platform import free_port


def tls_files(tmp_path) -> dict[str, str]:
    files = {k: tmp_path / f"{k}.pem" for k in ("ca_cert", "client_cert", "client_key")}
    for path in files.values():
        path.write_text("not read until a connection is made\n")
    return {k: str(v) for k, v in files.items()}


def test_docker_tls_is_read_from_the_hosts_file_for_a_tcp_engine(tmp_path):
    files = tls_files(tmp_path)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(f"""hosts:
  - name: gpu-1
    docker_url: tcp://gpu-1.example:2376
    docker_tls: {{ca_cert: {files['ca_cert']}, client_cert: {files['client_cert']}, client_key: {files['client_key']}}}
  - name: plain
    docker_url: tcp://gpu-2.example:2375
""")
    loaded = load_hosts(hosts)
    tls = loaded.get("gpu-1").docker_tls
    assert tls is not None and str(tls.client_key) == files["client_key"] and tls.verify is True
    assert loaded.get("plain").docker_tls is None  # allowed: unencrypted (docs/hosts.md says so)


@pytest.mark.parametrize("url", [None, "unix:///var/run/docker.sock", "ssh://ops@gpu-1"])
def test_docker_tls_needs_a_tcp_docker_url(url):
    with pytest.raises(ValidationError, match=r"host 'gpu-1': docker_tls needs a tcp:// docker_url"):
        Host(name="gpu-1", docker_url=url, docker_tls={"verify": True})


@pytest.mark.parametrize("block,says", [
    ({"client_cert": "/c.pem"}, "client_cert and client_key go together"),
    ({"client_key": "/k.pem"}, "client_cert and client_key go together"),
    ({"ca": "/ca.pem"}, "Extra inputs are not permitted"),
])
def test_a_bad_docker_tls_block_is_refused(block, says):
    with pytest.raises(ValidationError, match=says):
        Host(name="gpu-1", docker_url="tcp://gpu-1:2376", docker_tls=block)


def test_the_factory_asks_docker_py_for_tls_and_for_the_system_ssh_client(tmp_path):
    files = tls_files(tmp_path)
    ssh = client_kwargs(Engine(url="ssh://ops@gpu-1"))
    assert ssh == {"base_url": "ssh://ops@gpu-1", "use_ssh_client": True}
    tls = client_kwargs(Engine.of(Host(name="gpu-1", docker_url="tcp://gpu-1:2376", docker_tls=files)), timeout=3)
    assert tls["base_url"] == "tcp://gpu-1:2376" and tls["timeout"] == 3 and "use_ssh_client" not in tls
    assert isinstance(tls["tls"], TLSConfig) and tls["tls"].cert == (files["client_cert"], files["client_key"])
    assert tls["tls"].ca_cert == files["ca_cert"] and tls["tls"].verify is True
    assert "tls" not in client_kwargs(Engine(url="tcp://gpu-2:2375"))
    with pytest.raises(ValueError, match="from_env"):
        client_kwargs(Engine())


def test_other_tls_settings_are_another_engine_key(tmp_path):
    files = tls_files(tmp_path)
    with_cert = Engine(url="tcp://gpu-1:2376", tls=DockerTLS(**files))
    without = Engine(url="tcp://gpu-1:2376", tls=DockerTLS(ca_cert=files["ca_cert"]))
    assert len({with_cert.key, without.key, Engine(url="tcp://gpu-1:2376").key}) == 3
    assert Engine().key == LOCAL_ENGINE


def test_a_host_engine_that_cannot_be_reached_is_an_error_never_the_local_socket(tmp_path):
    with pytest.raises(DockerException):
        open_client(Engine(url=f"tcp://127.0.0.1:{free_port()}"), timeout=2)  # nothing listens there
    missing = DockerTLS(client_cert=tmp_path / "gone.pem", client_key=tmp_path / "gone.key")
    with pytest.raises(DockerException, match="certificate and key"):
        open_client(Engine(url=f"tcp://127.0.0.1:{free_port()}", tls=missing), timeout=2)


def test_the_supervisor_of_a_tls_or_ssh_host_gets_its_own_engines_socket(tmp_path):
    from deployments.setup import DOCKER_SOCKET, _docker_access

    socket = ([f"{DOCKER_SOCKET}:{DOCKER_SOCKET}"], {})
    assert _docker_access(Host(name="a", docker_url="tcp://a:2376", docker_tls=tls_files(tmp_path))) == socket
    assert _docker_access(Host(name="b", docker_url="ssh://ops@b")) == socket
    assert _docker_access(Host(name="c", docker_url="tcp://c:2375")) == ([], {"DOCKER_HOST": "tcp://c:2375"})
