"""ASGI middleware of the web app: refuse foreign hosts and cross-site requests, limit bodies, add security headers.

A page on another site can make the browser send a form (``application/x-www-form-urlencoded``,
``multipart/form-data`` or ``text/plain``) to this app without asking first. So a request that changes
anything (any method but GET, HEAD and OPTIONS) is refused with 403 unless

- its ``Sec-Fetch-Site`` header, when the browser sends one, is ``same-origin`` or ``none``;
- its ``Origin`` header, when present, is this app's own origin (scheme and ``Host``);
- and it carries a JSON body (``Content-Type: application/json``) or the ``X-Requested-With`` header,
  which a foreign page cannot send without a CORS preflight that this app never grants.

The ``Host`` header must name an address the app serves (DNS rebinding), else 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CLIENT_HEADER = "X-Requested-With"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


async def send_json(send: Send, status: int, detail: str) -> None:
    """Answer ``{"detail": detail}`` with ``status`` (the security headers are added by :class:`SiteGuard`)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without port or IPv6 brackets, lower case."""
    return (urlsplit(f"//{host}").hostname or "").lower()


class SiteGuard:
    """Refuse requests for other hosts and cross-site changes; add the security headers to every answer.

    Args:
        app: The ASGI app.
        allowed_hosts: Host names (or addresses) the app answers besides 127.0.0.1, localhost and ::1;
            ``*`` allows any.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {h.strip("[]").lower() for h in (*LOCAL_HOSTS, *allowed_hosts)}

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """The status and message to refuse the request with, or None to let it through."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if "*" not in self.allowed and host_name(host) not in self.allowed:
            return 400, (f"This app does not answer for the host {host[:80]!r}: open it as http://127.0.0.1 or "
                         "http://localhost (with its port), or start it with --allow-host NAME.")
        if scope["method"] in SAFE_METHODS:
            return None
        site = headers.get("sec-fetch-site")
        origin = headers.get("origin")
        if site is not None and site not in ("same-origin", "none"):
            return 403, f"Refused: a {site} request cannot change this app's data (it must come from its own page)."
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, (f"Refused: a request from {origin[:80]!r} cannot change this app's data "
                         "(it must come from the app's own page).")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json" and CLIENT_HEADER.lower() not in headers:
            return 403, (f"Refused: send a JSON body or the header {CLIENT_HEADER} (any value) with requests that "
                         "change data; a web page of another site cannot send either.")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        refused = self.refusal(scope)
        if refused is not None:
            await send_json(secured_send, *refused)
            return
        await self.app(scope, receive, secured_send)


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to requests whose body is larger than ``max_bytes`` (by header or as it streams in)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _send_413(self, send: Send) -> None:
        mb = self.max_bytes / (1024 * 1024)
        await send_json(send, 413, f"The upload is larger than this server's limit of {mb:g} MB: "
                                   "choose a smaller photo.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._send_413(send)
            return
        seen = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the app answers to the aborted body, the client gets the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._send_413(send)
