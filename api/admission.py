"""Admission in one API process: how many requests it waits on, and how much of them and of the queue one client
may hold.

The queue's own limits (texts and bytes, cluster-wide) are checked where the texts are pushed, atomically
(common/scripts.py ``PUSH_IF_ROOM``). Here, before anything reaches Redis: the process's request slots
(MAX_IN_FLIGHT), and each client's share (MAX_CLIENT_SHARE) of each limit: of the slots, of MAX_QUEUE_DEPTH texts and
of MAX_QUEUE_BYTES, so that one caller can neither fill the queue nor take every slot for everyone. The bytes are
those the queue counts, the sizes of the encoded work items, so a share holds whatever the texts' characters are.
A client is who api/access.py's ``client_identity`` says (the peer address, or what the trusted proxies put in
CLIENT_ID_HEADER). The shares are kept per API process: with P processes (API_PROCESSES x replicas) one client can
hold up to P shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from api.errors import ErrorKind, ServiceError
from api.settings import ApiSettings


class Admission:
    def __init__(self, settings: ApiSettings, on_in_flight: Callable[[int], object] = lambda count: None) -> None:
        """``on_in_flight``: told the count of requests waited on whenever it changes (e.g. a gauge's set)."""
        self._settings = settings
        self._on_in_flight = on_in_flight
        share = settings.max_client_share
        # One slot at least: a share of a small MAX_IN_FLIGHT must not shut every client out.
        self._client_requests = max(1, int(share * settings.max_in_flight))
        self._client_texts = int(share * settings.max_queue_depth)
        self._client_bytes = int(share * settings.max_queue_bytes)
        self.in_flight = 0  # requests this process waits on
        self._held: dict[str, tuple[int, int, int]] = {}  # client -> (requests, texts, bytes) in flight

    @contextmanager
    def admit(self, client: str, sizes: Sequence[int]) -> Iterator[None]:
        """Hold a request slot and the client's share for work items of ``sizes`` bytes each (their encoded
        messages, what MAX_QUEUE_BYTES counts) while the block runs, or raise 429."""
        s = self._settings
        if self.in_flight >= s.max_in_flight:
            raise self._overloaded(f"this API process is already serving {s.max_in_flight} requests")
        texts, size = len(sizes), sum(sizes)
        requests, held_texts, held_bytes = self._held.get(client, (0, 0, 0))
        if requests >= self._client_requests:
            raise self._overloaded(f"this client already has {requests} requests in flight in this API process; one "
                                   f"client may hold {s.max_client_share:g} of its {s.max_in_flight} request slots")
        if held_texts + texts > self._client_texts or held_bytes + size > self._client_bytes:
            raise self._overloaded(f"this client already has {held_texts} texts ({held_bytes} bytes) waiting; "
                                   f"one client may hold {s.max_client_share:g} of the queue")
        self.in_flight += 1
        self._on_in_flight(self.in_flight)
        self._held[client] = (requests + 1, held_texts + texts, held_bytes + size)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._on_in_flight(self.in_flight)
            left_requests, left_texts, left_bytes = self._held[client]
            if left_requests == 1:
                del self._held[client]
            else:
                self._held[client] = (left_requests - 1, left_texts - texts, left_bytes - size)

    def _overloaded(self, why: str) -> ServiceError:
        return ServiceError(ErrorKind.OVERLOADED, f"{why}; retry later", retry_after_s=self._settings.retry_after_s)
