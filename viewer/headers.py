"""Response headers for the arrays the viewer fetches (ASGI middleware around Streamlit's static files).

Streamlit serves `app/static/` with `Access-Control-Allow-Origin: *`, which lets any
web page read a file whose URL it learns. Our files are named by 128-bit content
hashes, so the URL is the only secret; we still drop the wildcard, keep
`nosniff`, forbid other origins from embedding them, and keep them out of shared
caches. Every file there is named by a hash of what determines its content (the image's bytes, the request
key, the viewer's own code), so its bytes never change under its name: the browser may keep it for a year without
asking again (`immutable`), and a returning visit reads the image and the viewer's code from its cache. The one
exception is a pending map's status file, rewritten as the computation moves on: never stored.
"""

from __future__ import annotations

CONTENT_NAMED = "private, max-age=31536000, immutable"
REWRITTEN = "no-store"


def cache_control(path: str) -> bytes:
    """The Cache-Control of one static file: status files change, everything else is named by its content."""
    return (REWRITTEN if path.endswith(".status.json") else CONTENT_NAMED).encode()


class StaticHeaders:
    """Rewrite the headers of every response under `/app/static/`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http" or "/app/static/" not in scope.get("path", ""):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message.get("type") == "http.response.start":
                drop = {
                    b"cache-control",
                    b"access-control-allow-origin",
                    b"access-control-allow-methods",
                    b"access-control-allow-headers",
                }
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
                headers = [(k, v) for k, v in headers if k.lower() != b"x-content-type-options"]
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"cache-control", cache_control(scope.get("path", ""))),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
