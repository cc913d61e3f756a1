"""Cross-origin access: an origin allow-list for browsers (energaize_ui calls the API from its own origin).

Settings: ``OPEVA_CORS_ORIGINS`` (or upstream's ``CORS_ALLOWED_ORIGINS``), read by
:class:`core.settings.PlatformSettings`; empty by default; a malformed list stops the start.

What the layer does, and why each rule:
- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from an
  allowed origin is answered here (204 with ``Access-Control-Allow-*``): the routes know no
  ``OPTIONS`` and the preflight carries no token. From any other origin: 403, no CORS header.
- Any answer to an allowed origin carries ``Access-Control-Allow-Origin`` (errors too, so the
  page can show their ``detail``); other origins get no CORS header, so the browser hides it.
- A state-changing request (POST, PUT, PATCH, DELETE) from an origin that is neither allowed
  nor the API's own is refused with 403 *before the route runs*. CORS alone only hides answers:
  a form post or a multipart upload is a "simple" request the browser sends without asking,
  so without this a foreign page could change things (with auth off, anything). A request with
  ``Sec-Fetch-Site: cross-site`` and no ``Origin`` is refused the same way.
- No ``Origin`` and no cross-site fetch metadata (curl, scripts, Postman): unchanged.

It is a layer of its own, outside the security layer (api/security.py: Host allow-list, tokens),
so that a 400/401/413 from below still reaches an allowed page with its CORS headers.
"""

from __future__ import annotations

import re
from typing import Any

from api.errors import error

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSE_HEADERS = "X-Total-Count, Content-Disposition, X-OPEVA-Site, X-OPEVA-Cap-Per-Collection, X-OPEVA-Truncated"
MAX_AGE = "600"
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _shown(origin: str) -> str:
    return origin if len(origin) <= 120 else origin[:120] + "..."


def _without_port(authority: str, defaults: tuple[str, ...]) -> str:
    name, sep, port = authority.rpartition(":")
    if sep and not port.endswith("]") and port in defaults:
        return name
    return authority


def same_origin(origin: str, host: str) -> bool:
    """``Origin`` names the API itself (a page this API served, e.g. /docs).

    The scheme is not compared: behind a TLS-terminating proxy the API sees http while the
    browser says https; the Host header (checked by the security layer) fixes the authority.
    """
    scheme, sep, authority = origin.partition("://")
    if not sep or not host or scheme not in _DEFAULT_PORTS:
        return False
    return _without_port(authority, (_DEFAULT_PORTS[scheme],)) == _without_port(host.strip().lower(), ("80", "443"))


class CorsLayer:
    """Outermost ASGI layer (see the module docstring)."""

    def __init__(self, app: Any, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        origin = headers.get(b"origin", b"").decode("latin-1").strip().lower()
        method = scope.get("method", "GET")
        allowed = bool(origin) and origin in self.origins
        own = bool(origin) and same_origin(origin, headers.get(b"host", b"").decode("latin-1"))
        if method == "OPTIONS" and origin and b"access-control-request-method" in headers and not own:
            if not allowed:
                return await error(403, f"origin {_shown(origin)!r} is not allowed: add it to OPEVA_CORS_ORIGINS")(scope, receive, send)
            return await self._preflight(origin, headers, scope, receive, send)
        if method in UNSAFE_METHODS and not allowed and not own:
            if origin:
                return await error(403, f"cross-origin {method} from {_shown(origin)!r} refused: the origin is not in OPEVA_CORS_ORIGINS")(scope, receive, send)
            if headers.get(b"sec-fetch-site", b"").lower() == b"cross-site":
                return await error(403, f"cross-site {method} without an allowed Origin refused (Sec-Fetch-Site: cross-site)")(scope, receive, send)
        if not allowed:
            return await self.app(scope, receive, send)

        async def with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"access-control-allow-credentials", b"true"),
                         (b"access-control-expose-headers", EXPOSE_HEADERS.encode()), (b"vary", b"Origin")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _websocket(self, scope: dict, receive: Any, send: Any) -> None:
        """A WebSocket handshake is never preflighted and its answer is not hidden from the page
        (CORS does not apply): a browser sends any page's Origin, so the allow-list is enforced
        here. A foreign Origin gets 403 before the route runs; no Origin (not a browser) passes."""
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        origin = headers.get(b"origin", b"").decode("latin-1").strip().lower()
        if origin and origin not in self.origins and not same_origin(origin, headers.get(b"host", b"").decode("latin-1")):
            return await error(403, f"WebSocket from origin {_shown(origin)!r} refused: the origin is not in OPEVA_CORS_ORIGINS")(scope, receive, send)
        await self.app(scope, receive, send)

    async def _preflight(self, origin: str, headers: dict[bytes, bytes], scope: dict, receive: Any, send: Any) -> None:
        requested = headers.get(b"access-control-request-headers", b"").decode("latin-1").strip()
        allow = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                 (b"access-control-allow-credentials", b"true"), (b"access-control-max-age", MAX_AGE.encode()), (b"vary", b"Origin")]
        # The page may send any request header (Content-Type, Authorization, Idempotency-Key...): the
        # origin is trusted, and the API reads only the headers it knows. A malformed list is not echoed.
        allow.append((b"access-control-allow-headers", (requested if _HEADER_LIST.fullmatch(requested or "x") and requested
                                                         else "Content-Type, Authorization, Idempotency-Key").encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": allow})
        await send({"type": "http.response.body", "body": b""})


def install(app: Any, origins: tuple[str, ...]) -> None:
    """Add the layer last (outermost). With no origin allowed it still refuses foreign state changes."""
    app.add_middleware(CorsLayer, origins=origins)
