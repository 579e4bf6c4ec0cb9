"""HTTP/1.1 for devchain, straight on the event loop (uvloop) with httptools' parser.

devchain answers every request synchronously from memory, so a request needs no task, no ASGI messages and no
middleware: a connection's protocol parses the bytes, calls `handle(method, path, body)` and writes the answer.
Under cryo's load (thousands of small requests a second, 16 at a time per chunk) uvicorn's per-request machinery
was about half of devchain's CPU (measured: 58 µs of CPU per request on uvicorn, see docs/devchain.md), and
devchain shares the machine with the pipeline it serves.

Keep-alive and pipelining follow the request (answers go out in request order, as they are computed in order);
`Expect: 100-continue` is answered; a body over `max_body_bytes` answers 413 and a malformed request 400, both
closing the connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httptools

Handler = Callable[[str, str, bytes], tuple[int, bytes]]

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 413: b"Content Too Large"}


class _Connection(asyncio.Protocol):
    def __init__(self, handle: Handler, max_body_bytes: int, connections: set[_Connection]) -> None:
        self._handle = handle
        self._max_body_bytes = max_body_bytes
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._size = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a uvloop TCPTransport: not an asyncio.Transport subclass
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._answer(400, _error("protocol upgrades are not supported"), keep_alive=False)
        except httptools.HttpParserError as error:
            self._answer(400, _error(f"malformed HTTP request: {error}"), keep_alive=False)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"expect" and value.lower() == b"100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self._max_body_bytes:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._size > self._max_body_bytes:
            self._answer(413, _error(f"request bodies are at most {self._max_body_bytes} bytes"), keep_alive=False)
            return
        method = self._parser.get_method().decode("ascii", "replace")
        # JSON-RPC clients post to "/": no URL to parse then
        path = "/" if self._url == b"/" else httptools.parse_url(self._url).path.decode("utf-8", "replace")
        status, body = self._handle(method, path, b"".join(self._body))
        self._answer(status, body, keep_alive=self._parser.should_keep_alive())

    def _answer(self, status: int, body: bytes, *, keep_alive: bool) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
            status,
            _REASONS.get(status, b""),
            len(body),
        )
        self._transport.write(b"".join((head, b"\r\n" if keep_alive else b"connection: close\r\n\r\n", body)))
        if not keep_alive:
            self._transport.close()


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def serve(handle: Handler, host: str, port: int, stop: asyncio.Event, *, max_body_bytes: int) -> None:
    """Answer HTTP on `host:port` with `handle` until `stop` is set; then close every connection."""
    connections: set[_Connection] = set()
    loop = asyncio.get_running_loop()
    # cryo opens many connections at once; a short accept queue resets them
    server = await loop.create_server(
        lambda: _Connection(handle, max_body_bytes, connections), host, port, backlog=4096, reuse_address=True
    )
    try:
        await stop.wait()
    finally:
        server.close()
        for connection in list(connections):
            connection.close()
        await server.wait_closed()
