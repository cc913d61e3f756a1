"""One TLS context for every Prefect client in a run's process, instead of one per client.

Why: Prefect 3.8.8 builds a new ``ssl.SSLContext`` in every ``PrefectClient`` and
``SyncPrefectClient`` it constructs, loading the whole CA bundle each time (24 ms of CPU in the
runtime image), even for an ``http://`` server. One flow run constructs about ten: the engine's,
the log shipper's, the events worker's, the suspension observer's, the pull steps', the
container entry's. On a 2-core host running short jobs back to back that was a sixth of a run's
own CPU (py-spy of the run containers under bench/lab.py).

The shared context is built by Prefect's own rule (``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``, else
``PREFECT_API_SSL_CERT_FILE``, else certifi's bundle), once per distinct setting, and is only
given to a client whose caller passed no ``verify`` of its own. ``SSLContext`` is made to be shared
by many connections and threads. Installed before the run's engine starts
(flows/container_entry.py for Docker hosts, deployments/forkserver.py for process and Slurm hosts).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

_lock = threading.Lock()
_contexts: dict[tuple[bool, str], ssl.SSLContext] = {}
_MARK = "_opeva_shared_tls"


def shared_context() -> ssl.SSLContext:
    """The context Prefect would build for a client now, built once per setting."""
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    insecure = bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value())
    cafile = "" if insecure else (PREFECT_API_SSL_CERT_FILE.value() or certifi.where())
    key = (insecure, cafile)
    with _lock:
        context = _contexts.get(key)
        if context is None:
            if insecure:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=cafile)
            _contexts[key] = context
        return context


def _sharing(original: Any) -> Any:
    def __init__(self: Any, api: Any, *args: Any, httpx_settings: dict[str, Any] | None = None, **kwargs: Any) -> None:
        settings = dict(httpx_settings or {})
        if "verify" not in settings:  # a caller's own choice is kept, as Prefect keeps it
            settings["verify"] = shared_context()
        original(self, api, *args, httpx_settings=settings, **kwargs)

    setattr(__init__, _MARK, True)
    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    return __init__


def install() -> None:
    """Make Prefect's two client classes take the shared context (idempotent)."""
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient

    for cls in (PrefectClient, SyncPrefectClient):
        if not getattr(cls.__init__, _MARK, False):
            cls.__init__ = _sharing(cls.__init__)  # type: ignore[method-assign]
