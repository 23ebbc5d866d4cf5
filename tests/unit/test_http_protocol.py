"""The API's HTTP protocol (api/http_protocol.py): each response reaches the socket in one write, status line,
headers and body together; a streamed response's chunks are not held back; nothing is lost on a close."""

import asyncio

import pytest
import uvicorn
from uvicorn.server import ServerState

from api.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport

REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


class SocketStandIn(asyncio.Transport):
    """What the event loop's transport would do with each write: one send() on the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data) -> None:
        assert not self.closed, "written after close"
        self.sends.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.sends.append(b"<eof>")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def answer(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


async def stream(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await asyncio.sleep(0.01)  # the next chunk comes later: the first must not wait for it
    await send({"type": "http.response.body", "body": b"second"})


async def serve(app, data: bytes, settle_s: float = 0.05) -> SocketStandIn:
    config = uvicorn.Config(app=app, http=CoalescingHttpToolsProtocol, log_config=None, lifespan="off")
    protocol = CoalescingHttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                           _loop=asyncio.get_running_loop())
    transport = SocketStandIn()
    protocol.connection_made(transport)
    protocol.data_received(data)
    await asyncio.sleep(settle_s)
    return transport


def test_a_response_goes_out_in_one_send_with_its_headers_and_body():
    sends = asyncio.run(serve(answer, REQUEST)).sends
    assert len(sends) == 1
    head, _, body = sends[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 11" in head and body == b'{"ok":true}'


def test_pipelined_requests_each_get_a_whole_response():
    sends = asyncio.run(serve(answer, REQUEST * 3)).sends
    assert b"".join(sends).count(b'HTTP/1.1 200 OK\r\n') == 3
    assert all(send.startswith(b"HTTP/1.1 200") and send.endswith(b'{"ok":true}') for send in sends)


def test_a_streamed_response_sends_each_chunk_when_it_comes():
    sends = asyncio.run(serve(stream, REQUEST)).sends
    assert len(sends) == 2
    assert sends[0].startswith(b"HTTP/1.1 200") and sends[0].endswith(b"5\r\nfirst\r\n")
    assert sends[1] == b"6\r\nsecond\r\n0\r\n\r\n"


def test_a_close_writes_what_is_pending_first_and_a_closed_transport_gets_nothing():
    async def scenario():
        socket = SocketStandIn()
        transport = CoalescingTransport(socket, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 400 Bad Request\r\n")
        transport.writelines([b"connection: close\r\n", memoryview(b"\r\n")])
        transport.close()
        transport.write(b"late")  # after the close: dropped, as the loop's own transport drops it
        await asyncio.sleep(0)
        return socket

    socket = asyncio.run(scenario())
    assert socket.sends == [b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n"] and socket.closed


def test_a_connection_closed_with_nothing_to_say_is_just_closed():
    """uvicorn closes idle keep-alive connections, and those whose client left, with nothing pending."""
    async def scenario():
        socket = SocketStandIn()
        CoalescingTransport(socket, asyncio.get_running_loop()).close()
        await asyncio.sleep(0)
        return socket

    socket = asyncio.run(scenario())
    assert socket.sends == [] and socket.closed


def test_an_end_of_file_comes_after_what_is_pending():
    async def scenario():
        socket = SocketStandIn()
        transport = CoalescingTransport(socket, asyncio.get_running_loop())
        transport.write(b"last words")
        transport.write_eof()
        await asyncio.sleep(0)
        return socket.sends

    assert asyncio.run(scenario()) == [b"last words", b"<eof>"]


@pytest.mark.parametrize("attribute", ["get_extra_info", "is_closing", "pause_reading", "set_write_buffer_limits"])
def test_everything_but_writing_is_the_transports_own(attribute):
    socket = SocketStandIn()
    transport = CoalescingTransport(socket, asyncio.new_event_loop())
    assert getattr(transport, attribute) == getattr(socket, attribute)
