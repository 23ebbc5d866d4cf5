"""Admission in one API process: how many requests it waits on, and how much of the queue one client may hold.

The queue's own limits (texts and bytes, cluster-wide) are checked where the texts are pushed, atomically
(common/scripts.py ``PUSH_IF_ROOM``). Here, before anything reaches Redis: the process's request slots
(MAX_IN_FLIGHT), and each client's share (MAX_CLIENT_SHARE) of MAX_QUEUE_DEPTH texts and MAX_QUEUE_BYTES of text,
so that one caller cannot fill the queue for everyone. A client is its peer address, or the value of the
CLIENT_ID_HEADER header when the API sits behind a proxy that sets it. The share is kept per API process: with P
processes (API_PROCESSES x replicas) one client can hold up to P shares.
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
        self._client_texts = int(settings.max_client_share * settings.max_queue_depth)
        # Characters, a lower bound of the UTF-8 bytes MAX_QUEUE_BYTES counts: no encoding needed per request.
        self._client_chars = int(settings.max_client_share * settings.max_queue_bytes)
        self.in_flight = 0  # requests this process waits on
        self._held: dict[str, tuple[int, int]] = {}  # client -> (texts, characters) in flight

    @contextmanager
    def admit(self, client: str, texts: Sequence[int]) -> Iterator[None]:
        """Hold a request slot and the client's share for texts of ``texts`` characters each (a pair: both texts)
        while the block runs, or raise 429."""
        s = self._settings
        if self.in_flight >= s.max_in_flight:
            raise self._overloaded(f"this API process is already serving {s.max_in_flight} requests")
        chars = sum(texts)
        held_texts, held_chars = self._held.get(client, (0, 0))
        if held_texts + len(texts) > self._client_texts or held_chars + chars > self._client_chars:
            raise self._overloaded(f"this client already has {held_texts} texts ({held_chars} characters) waiting; "
                                   f"one client may hold {s.max_client_share:g} of the queue")
        self.in_flight += 1
        self._on_in_flight(self.in_flight)
        self._held[client] = (held_texts + len(texts), held_chars + chars)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._on_in_flight(self.in_flight)
            left_texts, left_chars = self._held[client]
            if left_texts == len(texts):
                del self._held[client]
            else:
                self._held[client] = (left_texts - len(texts), left_chars - chars)

    def _overloaded(self, why: str) -> ServiceError:
        return ServiceError(ErrorKind.OVERLOADED, f"{why}; retry later", retry_after_s=self._settings.retry_after_s)
