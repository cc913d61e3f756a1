"""The environment each child process of the platform gets: an allow-list per service.

Why: every child used to get the whole environment of ``make up`` (API tokens, Prefect's
auth string, the database URL), so any child that ran foreign code, or any file a child
wrote its environment into, leaked them all (issue 21, attack 2). Now a child gets the
plain settings every process needs, plus only the secrets its service uses:

- the Prefect server: its own auth string and its database URL;
- the REST API: Prefect's auth string (it is a Prefect client), its tokens, MongoDB's URI;
- a worker: Prefect's auth string (it passes it to the flow runs' supervisor containers,
  never to a simulator: flows/sandbox.py builds the simulator's environment from the
  contract's variables and the host's ``simulator_env`` only);
- the deployment set-up: Prefect's auth string and MongoDB's URI (saved in a block);
- MongoDB and PostgreSQL: no secret at all.

A name is a secret when it is listed in :data:`SECRETS` or looks like one
(:data:`SECRET_WORDS`); unknown names outside :data:`PLAIN` and the ``OPEVA_``/``PREFECT_``
settings are dropped. No Prefect import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLAIN = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "TMPDIR",
    "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DO_NOT_TRACK",
    "NO_PROXY", "no_proxy",
    "CORS_ALLOWED_ORIGINS",  # upstream's name of OPEVA_CORS_ORIGINS (the API's browser allow-list)
    "SLURM_CONF",  # a Slurm host's cluster (docs/slurm.md): sinfo in the API, sbatch in its worker
})
PREFIXES = ("OPEVA_", "PREFECT_", "RABBITMQ_", "ERL_")  # RABBITMQ_/ERL_: the private broker's folders and ports (deployments/rabbitmq_server.py)
SECRETS = frozenset({
    "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING", "OPEVA_PREFECT_AUTH_STRING", "PREFECT_API_KEY",
    "OPEVA_API_TOKENS", "MONGO_URI", "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PGPASSWORD", "OPEVA_AMQP_URL", "PREFECT_REDIS_MESSAGING_URL", "PREFECT_SERVER_DOCKET_URL",  # redis://default:<password>@...
})
SECRET_WORDS = re.compile(r"TOKENS?$|PASSWORD|PASSWD|SECRET|AUTH_STRING|CREDENTIALS?$|PRIVATE|_KEY$|CONNECTION_URL|_URI$", re.IGNORECASE)
PATH_SUFFIXES = ("_FILE", "_PATH", "_DIR")  # where a secret is kept is not the secret

# service (the name deployments/platform.py gives the child; workers are "worker-<name>") -> its secrets
GRANTS: dict[str, frozenset[str]] = {
    "prefect-server": frozenset({"PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING",
                                 "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL",
                                 "PREFECT_REDIS_MESSAGING_URL", "PREFECT_SERVER_DOCKET_URL"}),
    "api": frozenset({"PREFECT_API_AUTH_STRING", "OPEVA_API_TOKENS", "MONGO_URI", "OPEVA_AMQP_URL",
                      "OPEVA_SMTP_PASSWORD"}),  # saved into e-mail channels' blocks (docs/notifications.md)
    "worker": frozenset({"PREFECT_API_AUTH_STRING"}),
    "setup": frozenset({"PREFECT_API_AUTH_STRING", "MONGO_URI"}),
    "mongo": frozenset(),
    "postgres": frozenset(),
    "redis": frozenset(),  # its password is in its config file (deployments/redis_server.py)
    "haproxy": frozenset(),
    "rabbitmq": frozenset(), "epmd": frozenset(),  # the broker's password is in its config file
}
# The scaled layout (deployments/scaled.py): "prefect-server-2" and "prefect-services" are
# Prefect servers, "api-2" is the API.
ALIASES = {"prefect-services": "prefect-server"}


def is_secret(name: str) -> bool:
    return name in SECRETS or (bool(SECRET_WORDS.search(name)) and not name.upper().endswith(PATH_SUFFIXES))


def grants_of(service: str) -> frozenset[str]:
    key = "worker" if service.startswith("worker") else ALIASES.get(service, re.sub(r"-[0-9]+$", "", service))
    return GRANTS.get(key, frozenset())


def child_env(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` reduced to what ``service`` may see: plain settings plus its own secrets."""
    grants = grants_of(service)
    out = {}
    for name, value in env.items():
        if name in grants:
            out[name] = value
        elif is_secret(name):
            continue
        elif name in PLAIN or name.startswith(PREFIXES) or name.startswith("LC_"):
            out[name] = value
    return out
