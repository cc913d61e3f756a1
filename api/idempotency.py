"""Idempotency-Key rules: per user and per body.

Why: a key alone, kept per deployment, let another user's retry (or a changed
request) answer someone else's job. The API scopes each key to its user
(:func:`api.usecases.jobs.scoped_key`) and records a digest of the request on the
run (label ``DIGEST_LABEL``); a key that comes back with another digest is a conflict
(409), never the earlier job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

DIGEST_LABEL = "opeva.request_sha256"


class IdempotencyConflict(ValueError):
    """An Idempotency-Key the caller used before for a different request body (409)."""

    def __init__(self, run_id: UUID | None) -> None:
        super().__init__("this Idempotency-Key was used for a different request body; use a new key for a new job")
        self.run_id = run_id


class Keyed(Protocol):
    idempotency_key: str | None
    labels: dict[str, str] | None


def conflicts(requests: Sequence[Keyed], earlier: Mapping[str, Any]) -> dict[int, IdempotencyConflict]:
    """Index -> conflict for each request whose key's earlier run (``earlier``: key -> run
    with ``labels`` and ``id``), or an earlier request of the same batch, had another digest."""
    out: dict[int, IdempotencyConflict] = {}
    first: dict[str, str | None] = {}
    for i, r in enumerate(requests):
        if not r.idempotency_key:
            continue
        before = earlier.get(r.idempotency_key)
        digest = (r.labels or {}).get(DIGEST_LABEL)
        known = (before.labels or {}).get(DIGEST_LABEL) if before is not None else first.setdefault(r.idempotency_key, digest)
        if known and digest and known != digest:
            out[i] = IdempotencyConflict(before.id if before is not None else None)
    return out
