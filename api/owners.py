"""Owners of experiment configs, datasets and site schemas: who may read, change, delete.

Rules (docs/security.md):
- the user who made an item owns it (recorded in :class:`core.owners.OwnerStore`);
- others may read it when ``OPEVA_SHARED_READ`` is true (the default), never change or
  delete it (403 naming the owner); admins may do everything;
- an item with no recorded owner (made before owners were kept, or in single-user
  mode) is readable by all and changed by admins only;
- with auth off (single-user mode) the one local user owns everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.errors import ApiError
from api.security import CurrentUser, User
from core.owners import Kind, OwnerStore

WHAT = {"config": "config", "dataset": "dataset", "site": "site schema"}


class OwnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPEVA_", extra="ignore")

    shared_read: bool = True


@dataclass(frozen=True)
class Ownership:
    """The caller, the store and the read rule, for one request."""

    store: OwnerStore
    user: User
    shared_read: bool = True

    @property
    def single_user(self) -> bool:
        return not self.user.authenticated

    def may_change(self, owner: str | None) -> bool:
        return self.single_user or self.user.admin or (owner is not None and owner == self.user.name)

    def may_read(self, owner: str | None) -> bool:
        return self.shared_read or self.may_change(owner) or owner is None

    def check_change(self, kind: Kind, name: str) -> None:
        """403 unless the caller owns ``name`` (or is an admin, or auth is off)."""
        if self.single_user or self.user.admin:
            return
        owner = self.store.owner(kind, name)
        if not self.may_change(owner):
            whose = f"belongs to {owner}" if owner else "has no recorded owner"
            raise ApiError(403, f"{WHAT[kind]} {name!r} {whose}; only its owner or an admin (OPEVA_API_ADMINS) may change or delete it",
                           owner=owner)

    def check_read(self, kind: Kind, name: str) -> None:
        """With ``OPEVA_SHARED_READ=false``: 404 for another user's item (its existence is not told)."""
        if self.shared_read or self.single_user or self.user.admin:
            return
        if not self.may_read(self.store.owner(kind, name)):
            raise ApiError(404, f"{WHAT[kind]} {name!r} not found")

    def visible(self, kind: Kind, names: Iterable[str]) -> list[str]:
        names = list(names)
        if self.shared_read or self.single_user or self.user.admin:
            return names
        owners = self.store.owners(kind)
        return [n for n in names if self.may_read(owners.get(n))]

    def made(self, kind: Kind, name: str) -> None:
        """The caller made ``name``: record it (in single-user mode any older claim is dropped)."""
        self.store.claim(kind, name, self.user.name)

    def gone(self, kind: Kind, name: str) -> None:
        self.store.forget(kind, name)


def get_ownership(request: Request, user: CurrentUser) -> Ownership:
    """One store per app, made on first use from the shared storage's root."""
    state = request.app.state
    if getattr(state, "owners", None) is None:
        state.owners = OwnerStore(state.storage.root)
        state.shared_read = OwnerSettings().shared_read
    return Ownership(state.owners, user, state.shared_read)


Owned = Annotated[Ownership, Depends(get_ownership)]
