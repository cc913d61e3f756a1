"""The one place that opens a Docker client for a host's engine.

Why one place: the API's image checks (core/images.py), the stopper (api/stopper.py) and
the set-up (deployments/setup.py, deployments/reference_image.py) all talk to the engine of
a host, and each used to build its own client from ``docker_url`` alone, so a ``tcp://``
engine behind TLS could not be reached at all, and a mistake in one of them could quietly
ask this machine's socket about another machine. Here a host with a ``docker_url`` is only
ever reached at that URL (TLS settings from its ``docker_tls:`` block, the system ``ssh``
client for ``ssh://``); only a host without one means this machine's engine (``DOCKER_HOST``
or the local socket). Certificate paths are paths on the machine that runs the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import docker

LOCAL_ENGINE = "local"  # the key of this machine's engine


class DockerTLS(BaseModel):
    """A host's ``docker_tls:`` block: how the API proves itself to, and checks, a ``tcp://`` engine
    started with ``--tlsverify`` (the files of Docker's "Protect the Docker daemon socket")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ca_cert: Path | None = Field(None, description="CA that signed the engine's certificate; none: the CAs requests trusts.")
    client_cert: Path | None = Field(None, description="This side's certificate (an engine with --tlsverify requires one).")
    client_key: Path | None = Field(None, description="Its private key.")
    verify: bool = Field(True, description="Check the engine's certificate; false only encrypts.")

    @model_validator(mode="after")
    def _pair(self) -> "DockerTLS":
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("docker_tls: client_cert and client_key go together (give both or neither)")
        return self

    def tls_config(self) -> Any:
        """docker-py's TLSConfig; it raises TLSParameterError (a DockerException) for a missing file."""
        from docker.tls import TLSConfig

        cert = (str(self.client_cert), str(self.client_key)) if self.client_cert else None
        return TLSConfig(client_cert=cert, ca_cert=str(self.ca_cert) if self.ca_cert else None, verify=self.verify)


class HostEngine(Protocol):
    """What a host (core.hosts.Host, which imports this module) says of its engine."""

    @property
    def docker_url(self) -> str | None: ...

    @property
    def docker_tls(self) -> DockerTLS | None: ...


class Engine(BaseModel):
    """Where an engine is and how to reach it; ``url`` None: this machine's engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str | None = None
    tls: DockerTLS | None = None

    @classmethod
    def of(cls, host: HostEngine) -> "Engine":
        return cls(url=host.docker_url, tls=host.docker_tls)

    @property
    def key(self) -> str:
        """Names one way in: other TLS settings are another key, so a listing read with the old
        certificates never answers for the new ones (core.images caches listings per key)."""
        if self.url is None:
            return LOCAL_ENGINE
        return self.url if self.tls is None else f"{self.url} tls={self.tls.model_dump_json()}"


def client_kwargs(engine: Engine, timeout: float | None = None) -> dict[str, Any]:
    """``docker.DockerClient`` arguments for a network or socket engine (``engine.url`` set)."""
    if engine.url is None:
        raise ValueError("this machine's engine is opened with docker.from_env, not by URL")
    kwargs: dict[str, Any] = {"base_url": engine.url}
    if engine.url.startswith("ssh://"):
        kwargs["use_ssh_client"] = True  # the system ssh client (its config, keys and known_hosts), not paramiko
    if engine.tls is not None:
        kwargs["tls"] = engine.tls.tls_config()
    if timeout is not None:
        kwargs["timeout"] = timeout
    return kwargs


def open_client(engine: Engine, timeout: float | None = None) -> "docker.DockerClient":
    """A client of ``engine``; the caller closes it. Raises DockerException when it cannot be
    reached (docker-py asks the engine's API version while connecting)."""
    import docker

    if engine.url is None:
        return docker.from_env(**({"timeout": timeout} if timeout is not None else {}))
    kwargs = client_kwargs(engine, timeout)
    if engine.tls is None or (engine.tls.verify and engine.tls.ca_cert is None):
        return docker.DockerClient(**kwargs)
    # requests lets REQUESTS_CA_BUNDLE (set on many machines, and passed to the API) replace a
    # session's CA, or its verify=False, for every request (psf/requests#3829), so the host's
    # ca_cert would never be used: the version is asked with the environment ignored, and the
    # client made with it.
    client = docker.DockerClient(**kwargs, version=_tls_api_version(kwargs))
    client.api.trust_env = False
    return client


def _tls_api_version(kwargs: dict[str, Any]) -> str:
    import docker
    from docker.constants import MINIMUM_DOCKER_API_VERSION
    from docker.errors import DockerException
    from requests import RequestException

    probe = docker.APIClient(**kwargs, version=MINIMUM_DOCKER_API_VERSION)  # a version given: nothing asked yet
    probe.trust_env = False
    try:
        return str(probe.version(api_version=False)["ApiVersion"])
    except RequestException as exc:  # the innermost error says it: a refused certificate, an unknown CA, a closed port
        inner: BaseException = exc
        while (cause := inner.__cause__ or inner.__context__) is not None:
            inner = cause
        raise DockerException(f"the engine at {kwargs['base_url']} did not answer over TLS ({type(inner).__name__}: {inner}); "
                              "check the host's docker_tls") from exc
    finally:
        probe.close()


def engine_client(host: HostEngine, timeout: float | None = None) -> "docker.DockerClient":
    """A client of the host's engine: its ``docker_url`` (never the local socket instead), else this machine's."""
    return open_client(Engine.of(host), timeout)

