"""Who may call the API and from where: tokens mapped to users, roles, the Host allow-list, docs.

Settings (environment, read once when the app is made):
- ``OPEVA_API_TOKENS``: ``alice:tok1,bob:tok2`` (user:token pairs); a bare ``tok`` (the old
  plain list) is a user named ``token<n>`` with every right, as before. Empty: auth off.
- ``OPEVA_API_ADMINS``: users who may stop or delete anyone's job (others: their own only).
- ``OPEVA_API_RUNNERS``: users who may choose ``command`` and ``image`` (admins may too).
- ``OPEVA_ALLOWED_HOSTS``: names accepted in the ``Host`` header besides the loopback ones
  (``.example.org`` matches its subdomains, ``*`` anything); guards against DNS rebinding.
- ``OPEVA_PUBLIC_DOCS`` (default 1): ``/docs`` and ``/openapi.json`` without a token.
- ``OPEVA_ENV=production`` refuses to start without tokens unless ``OPEVA_ALLOW_OPEN=1``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.errors import ApiError, error
from core.limits import LIMITS, FollowerLimiter, json_body_problem

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
PUBLIC_PATHS = ("/health",)
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class SecuritySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPEVA_", extra="ignore")

    api_tokens: str = ""
    api_admins: str = ""
    api_runners: str = ""
    allowed_hosts: str = ""
    public_docs: bool = True
    env: str = "development"
    allow_open: bool = False


@dataclass(frozen=True)
class User:
    """The caller. With auth off every caller is ``User(None, ...)`` with every right."""

    name: str | None
    admin: bool = False
    runner: bool = False

    @property
    def authenticated(self) -> bool:
        return self.name is not None


ANONYMOUS = User(None, admin=True, runner=True)


def _names(value: str) -> frozenset[str]:
    return frozenset(n.strip() for n in value.split(",") if n.strip())


class TokenConfigError(ValueError):
    """An ``OPEVA_API_TOKENS`` entry the API will not guess at: start-up is refused, naming it."""


_TOKEN = re.compile(r"[!#-&(-+\--9;-~]{1,512}")  # visible ASCII but quotes, comma, colon and spaces


def _entry_name(n: int, user: str | None) -> str:
    return f"entry {n} ({user!r})" if user is not None else f"entry {n}"


def parse_tokens(value: str, admins: frozenset[str] = frozenset(), runners: frozenset[str] = frozenset()) -> list[tuple[bytes, User]]:
    """``OPEVA_API_TOKENS`` -> (token bytes, user). The one parser (the API, its OpenAPI
    document and the tests all read tokens through it).

    ``user:token`` entries; a bare ``token`` (the old plain list) is a user named
    ``token<n>`` with every right. Anything else raises :class:`TokenConfigError` naming
    the entry by position and user (never its token): a user name with ``+``, spaces or
    quotes, an empty token, a repeated user or token. Why refuse instead of skipping:
    a guessed entry once became an admin token."""
    out: list[tuple[bytes, User]] = []
    if not value.strip():
        return out
    seen_users: set[str] = set()
    seen_tokens: set[str] = set()
    for n, raw in enumerate(value.split(","), start=1):
        entry = raw.strip()
        if not entry:
            raise TokenConfigError(f"OPEVA_API_TOKENS {_entry_name(n, None)} is empty (a stray comma?)")
        user, sep, token = entry.partition(":")
        if sep:
            if not _USER.fullmatch(user):
                raise TokenConfigError(f"OPEVA_API_TOKENS {_entry_name(n, user)}: a user name is 1-64 of A-Z a-z 0-9 . _ @ - (starting with a letter or digit)")
            if not token:
                raise TokenConfigError(f"OPEVA_API_TOKENS {_entry_name(n, user)}: the token is empty")
            if not _TOKEN.fullmatch(token):
                raise TokenConfigError(f"OPEVA_API_TOKENS {_entry_name(n, user)}: a token is 1-512 visible ASCII characters without quotes, spaces, commas or colons")
            made = User(user, admin=user in admins, runner=user in admins or user in runners)
        else:
            if not _TOKEN.fullmatch(entry):
                raise TokenConfigError(f"OPEVA_API_TOKENS {_entry_name(n, None)}: not 'user:token', and not a plain token "
                                       "(visible ASCII without quotes, spaces, commas or colons)")
            user = f"token{n}"  # the old plain list: every holder could do everything
            token = entry
            made = User(user, admin=True, runner=True)
        if user in seen_users:
            raise TokenConfigError(f"OPEVA_API_TOKENS {_entry_name(n, user)}: user {user!r} is listed twice")
        if token in seen_tokens:
            raise TokenConfigError(f"OPEVA_API_TOKENS {_entry_name(n, user)}: the same token as an earlier entry")
        seen_users.add(user)
        seen_tokens.add(token)
        out.append((token.encode(), made))
    return out


class Auth:
    """Bearer tokens -> users. Tokens are compared as bytes in constant time, all of them."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._tokens = parse_tokens(settings.api_tokens, _names(settings.api_admins), _names(settings.api_runners))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    @property
    def users(self) -> list[str]:
        return sorted({u.name for _, u in self._tokens if u.name})

    def authenticate(self, authorization: str | None) -> User:
        if not self.enabled:
            return ANONYMOUS
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        # Starlette decodes header bytes as latin-1; re-encoding gives the bytes sent.
        raw = presented.strip().encode("latin-1", errors="replace")
        found: User | None = None
        for token, user in self._tokens:
            if secrets.compare_digest(raw, token) and found is None:
                found = user
        if found is None:
            raise ApiError(401, "invalid bearer token")
        return found


def _auth(request: Request) -> Auth:
    return request.app.state.auth


def authenticate(request: Request) -> User:
    """The caller, remembered on the request (the router-level check and the route share it)."""
    user = getattr(request.state, "user", None)
    if user is None:
        user = _auth(request).authenticate(request.headers.get("authorization"))
        request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(authenticate)]


def may_manage(user: User, owner: str | None) -> bool:
    """Stop/delete: the job's submitter or an admin (everyone when auth is off)."""
    return user.admin or (user.authenticated and owner is not None and owner == user.name)


def require_manage(user: User, owner: str | None, job_id: str) -> None:
    if not may_manage(user, owner):
        raise ApiError(403, f"job {job_id} belongs to {owner or 'nobody known'}; only its owner or an admin may do this")


def require_admin(user: CurrentUser) -> User:
    """Operator actions (``/ops/*``: requeue, fail, cancel, clean-ups) are for admins (everyone when auth is off)."""
    if not user.admin:
        raise ApiError(403, "operator actions (/ops/...) need an admin token (OPEVA_API_ADMINS)")
    return user


def submitter(user: User, claimed: str | None) -> str | None:
    """``submitted_by`` as recorded: the token's user when auth is on, else what the caller said."""
    return user.name if user.authenticated else claimed


def require_runtime_choice(user: User, *, command: Any = None, image: Any = None) -> None:
    """Choosing the command or a full image runs code of the caller's choosing: runners only."""
    chosen = [n for n, v in (("command", command), ("image", image)) if v]
    if chosen and not user.runner:
        raise ApiError(403, f"{' and '.join(chosen)} may only be chosen by users in OPEVA_API_RUNNERS or OPEVA_API_ADMINS")


# -- ASGI layers ---------------------------------------------------------------------------

def unread(response: Any) -> Any:
    """An answer given without reading the body: ``Connection: close`` makes the server
    close the connection after it, instead of draining (reading) the rest of the body."""
    response.headers["connection"] = "close"
    return response


def host_name(value: str) -> str:
    """``[::1]:8000`` -> ``::1``; ``Example.org.:80`` -> ``example.org``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    if "*" in allowed or host in allowed:
        return True
    return any(a.startswith(".") and (host.endswith(a) or host == a[1:]) for a in allowed)


class SecurityLayer:
    """Outermost ASGI layer: Host allow-list, docs visibility, JSON shape limits."""

    def __init__(self, app: Any, *, allowed_hosts: frozenset[str], public_docs: bool, auth: Auth, max_body_bytes: int,
                 streamed: frozenset[str] = frozenset()) -> None:
        self.app, self.allowed, self.public_docs, self.auth = app, allowed_hosts, public_docs, auth
        self.max_body_bytes, self.streamed = max_body_bytes, streamed

    def _needs_token(self, scope: dict) -> bool:
        """Every route but /health and the public docs; CORS preflights (OPTIONS) carry no token."""
        path = scope.get("path")
        if not self.auth.enabled or scope.get("method") == "OPTIONS" or path in PUBLIC_PATHS:
            return False
        return not (path in DOCS_PATHS and self.public_docs)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if not host or not host_allowed(host, self.allowed):
            shown = host[:100] or "(none)"
            return await error(400, f"Host header {shown!r} is not allowed; set OPEVA_ALLOWED_HOSTS to serve other names")(scope, receive, send)
        if scope["type"] == "http" and scope.get("path") in DOCS_PATHS and not self.public_docs:
            if not self.auth.enabled:
                return await error(404, "the API docs are not public (OPEVA_PUBLIC_DOCS=0)")(scope, receive, send)
            try:
                self.auth.authenticate(headers.get(b"authorization", b"").decode("latin-1") or None)
            except ApiError as exc:
                return await error(exc.status_code, exc.detail)(scope, receive, send)
        if scope["type"] == "http" and self._needs_token(scope):
            # Before any byte of the body is read: an anonymous 2 GiB upload costs nothing.
            try:
                user = self.auth.authenticate(headers.get(b"authorization", b"").decode("latin-1") or None)
            except ApiError as exc:
                return await unread(error(exc.status_code, exc.detail))(scope, receive, send)
            scope.setdefault("state", {})["user"] = user  # request.state.user: authenticate() reuses it
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes and scope.get("path") not in self.streamed:
            return await unread(error(413, f"request body too large: the limit is {self.max_body_bytes} bytes"))(scope, receive, send)
        content_type = headers.get(b"content-type", b"").lower()
        # FastAPI parses a body as JSON when its type says json, and also when no type is sent.
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE") and (not content_type or b"json" in content_type):
            return await self._json_checked(scope, receive, send)
        await self.app(scope, receive, send)

    async def _json_checked(self, scope: dict, receive: Any, send: Any) -> None:
        """Buffer the body (at most the size limit; over it, the size layer answers 413) and check its shape."""
        messages: list[dict] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes or not message.get("more_body"):
                break
        if len(body) <= self.max_body_bytes and (problem := await _shape_problem(bytes(body))):
            return await error(422, problem)(scope, receive, send)

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _shape_problem(body: bytes) -> str | None:
    """Small bodies are checked inline; big ones in a thread, so the event loop keeps serving."""
    if len(body) < 65536:
        return json_body_problem(body)
    return await anyio.to_thread.run_sync(json_body_problem, body)


def _openapi_with_scheme(app: FastAPI, auth: Auth) -> None:
    """Declare the bearer scheme in OpenAPI only when tokens are on (else the docs would lie)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        if auth.enabled:
            schema.setdefault("components", {})["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "A token from OPEVA_API_TOKENS."}}
            for path, operations in schema.get("paths", {}).items():
                if path != "/health":
                    for op in operations.values():
                        op["security"] = [{"bearerAuth": []}]
                        op.setdefault("responses", {})["401"] = {
                            "description": "Missing or wrong bearer token",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                        }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI, *, max_body_bytes: int, streamed: frozenset[str] = frozenset()) -> None:
    """Check the start-up rules, then add the security layer (call after the other middleware)."""
    settings = SecuritySettings()
    try:
        auth = Auth(settings)
    except TokenConfigError as exc:
        raise SystemExit(f"OPEVA API refuses to start: {exc}") from None
    if settings.env.lower() == "production" and not auth.enabled and not settings.allow_open:
        raise SystemExit(
            "OPEVA API refuses to start in production without tokens: set OPEVA_API_TOKENS (user:token,...) "
            "or OPEVA_ALLOW_OPEN=1 to run open on purpose"
        )
    app.state.auth = auth
    app.state.followers = FollowerLimiter(LIMITS.max_followers_per_job, LIMITS.max_followers)
    _openapi_with_scheme(app, auth)
    allowed = frozenset(LOOPBACK_HOSTS) | frozenset(h.lower().rstrip(".") for h in _names(settings.allowed_hosts))
    app.add_middleware(SecurityLayer, allowed_hosts=allowed, public_docs=settings.public_docs, auth=auth, max_body_bytes=max_body_bytes, streamed=streamed)
