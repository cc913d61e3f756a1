"""The few Prefect REST calls the platform makes over plain HTTP, without Prefect's client.

Why a second way to talk to Prefect next to the API's gateway: the places that use this cannot or
should not build Prefect's client. ``make up``'s reconciler and the host join run before (or
beside) any Prefect client and only need three calls; a run container's PID 1 polls its run's
state once a second, where Prefect's client cost 0.16 CPU-s per run to build and validated a
whole FlowRun model on every poll (flows/container_entry.py). It lives in ``core`` because the
runtime image ships ``core``, ``flows`` and ``blocks`` only, and it imports no Prefect module.

Credentials follow Prefect's own settings: an auth string (``user:password``, HTTP Basic, the
self-hosted server) or an API key (Bearer, Prefect Cloud). TLS: the caller's ``verify``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpx

PAGE = 200  # runs per filter request (Prefect's server caps a page at 200)


def credentials(auth: str | None, api_key: str | None) -> tuple[httpx.Auth | None, dict[str, str]]:
    """Prefect's rule: an auth string wins over an API key. A string without ``:`` is no Basic pair."""
    if auth and ":" in auth:
        return httpx.BasicAuth(*auth.split(":", 1)), {}
    if api_key:
        return None, {"Authorization": f"Bearer {api_key}"}
    return None, {}


class PrefectRest:
    """A run's state, the runs of some pools, and a state proposal: no retries (every caller polls again)."""

    def __init__(self, api_url: str, auth: str | None = None, *, api_key: str | None = None,
                 verify: ssl.SSLContext | bool = True, timeout: float = 30.0) -> None:
        basic, headers = credentials(auth, api_key)
        self.http = httpx.Client(base_url=api_url.rstrip("/"), auth=basic, headers=headers, verify=verify, timeout=timeout)

    def __enter__(self) -> PrefectRest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def state_type(self, run_id: str) -> str | None:
        """The run's state type (``RUNNING``, ``CANCELLING`` …); None when the answer holds no state object."""
        r = self.http.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        body = r.json()
        state = body.get("state") if isinstance(body, dict) else None
        kind = state.get("type") if isinstance(state, dict) else None
        return kind if isinstance(kind, str) else None

    def runs(self, *, ids: Iterable[str] = (), state_types: Iterable[str] = (), pools: Iterable[str] = ()) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"flow_runs": {}, "limit": PAGE}
        if ids := list(ids):
            body["flow_runs"]["id"] = {"any_": ids}
        if state_types := list(state_types):
            body["flow_runs"]["state"] = {"type": {"any_": state_types}}
        if pools := list(pools):
            body["work_pools"] = {"name": {"any_": pools}}
        found: list[dict[str, Any]] = []
        while True:
            page = self.http.post("/flow_runs/filter", json={**body, "offset": len(found)})
            page.raise_for_status()
            found += page.json()
            if len(page.json()) < PAGE:
                return found

    def set_state(self, run_id: str, state_type: str, name: str, message: str, *, force: bool = False) -> str:
        """Propose a state (not forced unless asked: a run that became final meanwhile keeps its own)."""
        r = self.http.post(f"/flow_runs/{run_id}/set_state",
                           json={"state": {"type": state_type, "name": name, "message": message}, "force": force})
        r.raise_for_status()
        return r.json().get("status", "")

    def close(self) -> None:
        self.http.close()
