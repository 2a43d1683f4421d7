"""The request guard (an ASGI middleware in front of the app): refuses requests for another Host
(DNS rebinding) and request bodies over the limit (413, counted as they arrive when there is no
Content-Length), and adds security headers (a strict CSP on the page, nosniff everywhere)."""

from __future__ import annotations

import json
from typing import Any

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_NO_CSP = ("/docs", "/redoc", "/openapi.json")  # FastAPI's pages load their scripts from a CDN
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
       "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


class BodyTooLarge(Exception):
    """A request body grew over the limit while it was being read."""


class RequestGuard:
    """See the module docstring. ``allowed_hosts`` None or containing ``"*"``: any Host."""

    def __init__(self, app: Any, max_body: int, allowed_hosts: list[str] | None):
        self.app = app
        self.max_body = max_body
        self.allowed = None if allowed_hosts is None or "*" in allowed_hosts else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed is not None:
            host = host_only(headers.get("host", ""))
            if host not in self.allowed:
                await send_json(send, 400, f"the Host header {headers.get('host', '')!r} is not served here; "
                                           "open the page at the address vecface serve printed")
                return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await send_json(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body:
                await send_json(send, 413, f"the request body is {int(length):,} bytes; the limit is "
                                           f"{self.max_body:,} bytes")
                return
        received = 0
        started = False
        path = scope.get("path", "")

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge()
            return message

        async def send_with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if not path.startswith(_NO_CSP):
                    extra += [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if started:
                raise
            await send_json(send, 413, f"the request body is over the limit of {self.max_body:,} bytes")


def host_only(host: str) -> str:
    """The host name of a Host header value, without the port (``[::1]:8000`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def send_json(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})
