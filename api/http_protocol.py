"""uvicorn's httptools HTTP/1.1 protocol, each response sent in one write instead of two.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``, and its body when
the app sends ``http.response.body``: two ``send()`` system calls for every answer, though the service sends both
in the same turn of the event loop. Those two writes were 8.5 % of the API process's CPU samples under load (py-spy,
100 connections, Intel Xeon, before this protocol). This protocol hands uvicorn a transport that gathers what is
written during one turn of the event loop and writes it at the end of that turn, once. Nothing waits longer than
that turn: a streamed response's chunks still go out as they come, and a close writes what is pending first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """An ``asyncio.Transport`` stand-in whose writes made in one turn of ``loop`` reach ``transport`` as one write,
    at the end of that turn; anything else is ``transport``'s own."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None  # what this turn wrote so far; None: nothing (no flush scheduled)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Write what is pending, in one write (a transport already closing drops it, as its own write would)."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))  # of one chunk: that chunk itself, not a copy

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol on a ``CoalescingTransport``: what it writes in one turn goes out at once."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
