"""The models a deployment serves, as an API process routes requests to them.

Each worker serves one model version under a name (SERVED_MODEL_NAME, MODEL_VERSION) from a queue of its own, and
adds ``<name>/<version>`` to the deployment's ``models`` set (common/keys.py). An API process keeps one
``ModelVersion`` per member it has seen: that version's keys, its gateway (its own admission slots and waiting
connections, so that a model whose workers are down or overloaded holds none of another's), its cluster view and
its catalog of live workers. All of them are refreshed in the background about once a second (and at once when a
request names what this process has not seen yet), so routing a request only reads memory.

The rule: a request that pins a version (``/v2/models/<name>/versions/<v>/...``) goes to it; one that does not goes
to its name's highest version with a live worker, chosen once, before admission, so that all its texts are answered
by one version. A name no worker ever served: 404; a known one (or the default, SERVED_MODEL_NAME) with no live
worker: 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio

from api.catalog import REFRESH_INTERVAL_S, Catalog
from api.cluster import ClusterView
from api.errors import ErrorKind, ServiceError, shown
from api.gateway import Gateway
from api.redis_errors import UnavailableOnRedisError
from common.keys import Keys

log = logging.getLogger(__name__)

T = TypeVar("T")

# A request naming a model (or version) this process has not seen refreshes the list first, at most this often: a
# model that just came up is served at once, and a flood of requests for a name that does not exist costs Redis one
# read per interval, not one per request.
MISS_REFRESH_S = 0.25


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One served version of a model, as this API process reaches it."""

    name: str
    version: int
    keys: Keys
    gateway: Gateway
    cluster: ClusterView
    catalog: Catalog
    pool: redis.asyncio.Redis | None = None  # its own connections (the waits), closed when it is retired

    @property
    def live(self) -> bool:
        """Some worker of it beats and makes progress (as last read)."""
        return self.catalog.view.workers > 0


# (name, version, its keys) -> the version with its gateway, cluster view and catalog (api/app.py builds them).
BuildVersion = Callable[[str, int, Keys], ModelVersion]


class ModelRouter:
    def __init__(self, client: redis.asyncio.Redis, keys: Keys, default: str, build: BuildVersion,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``keys``: the deployment's (their ``models`` set); ``default``: the name requests that name none go to."""
        self._redis = client
        self._keys = keys
        self.default = default
        self._build = build
        self._clock = clock
        self._unavailable = UnavailableOnRedisError(client)
        self._versions: dict[str, dict[int, ModelVersion]] = {}
        self._retiring: list[ModelVersion] = []  # gone from the models, closed once nothing waits on them
        self._read_at = float("-inf")  # when the last read started, whatever came of it
        self._refreshing: asyncio.Future[None] | None = None

    def names(self) -> list[str]:
        """Every name known here (the default among them), sorted."""
        return sorted({self.default, *self._versions})

    def is_known(self, name: str) -> bool:
        """``name`` is the default or was served (as last read)."""
        return name == self.default or name in self._versions

    def versions(self, name: str) -> list[ModelVersion]:
        """The versions of ``name`` seen so far, lowest first."""
        known = self._versions.get(name, {})
        return [known[v] for v in sorted(known)]

    def all_versions(self) -> Iterable[ModelVersion]:
        for name in sorted(self._versions):
            yield from self.versions(name)

    def routed(self, name: str | None = None) -> ModelVersion | None:
        """Where an unpinned request for ``name`` (None: the default) would go now, if anywhere."""
        try:
            return self.pick(name)
        except ServiceError:
            return None

    def known(self, name: str | None, version: int | None = None) -> dict[int, ModelVersion]:
        """The versions of ``name`` (None: the default) seen so far; raises NOT_FOUND for a name never served (but
        the default) or a version of it never served."""
        name = self.default if name is None else name
        known = self._versions.get(name, {})
        if not known and name != self.default:
            raise ServiceError(ErrorKind.NOT_FOUND, f"no model {shown(name)} here; served: "
                               f"{', '.join(map(repr, self.names()))}")
        if version is not None and version not in known:
            raise ServiceError(ErrorKind.NOT_FOUND, f"model {name!r} has no version {version} here; versions: "
                               f"{', '.join(map(str, sorted(known))) or 'none yet'}")
        return known

    def pick(self, name: str | None, version: int | None = None) -> ModelVersion:
        """Where a request for ``name`` (None: the default) and ``version`` (None: unpinned) goes, from what was last
        read: raises NOT_FOUND for what was never served, UNAVAILABLE for what has no live worker."""
        known = self.known(name, version)
        name = self.default if name is None else name
        if version is not None:
            chosen = known[version]
            if not chosen.live:
                raise _down(f"version {version} of model {name!r}")
            return chosen
        newest = max((v for v, served in known.items() if served.live), default=None)
        if newest is None:
            raise _down(f"model {name!r}")
        return known[newest]

    async def route(self, name: str | None, version: int | None = None) -> ModelVersion:
        """``pick``, after reading the models again if it finds nothing and they were not read just now."""
        return await self._read_on_miss(lambda: self.pick(name, version))

    async def find(self, name: str | None, version: int | None = None) -> dict[int, ModelVersion]:
        """``known``, after reading the models again if it finds nothing and they were not read just now."""
        return await self._read_on_miss(lambda: self.known(name, version))

    async def _read_on_miss(self, look: Callable[[], T]) -> T:
        """``look``, again after a read of the models if it found nothing: the read in progress (no command of its
        own), else a new one, unless the last started within MISS_REFRESH_S (failed reads count: Redis away is no
        excuse)."""
        try:
            return look()
        except ServiceError:
            reading = self._refreshing is not None and not self._refreshing.done()
            if not reading and self._clock() - self._read_at < MISS_REFRESH_S:
                raise
        await self.refresh()
        return look()

    async def refresh(self) -> None:
        """Read the models and every version's live workers now; concurrent callers share one read. Raises
        ServiceError (503) when Redis is away; a version whose workers cannot be read keeps its last view."""
        if self._refreshing is None or self._refreshing.done():
            self._read_at = self._clock()
            self._refreshing = asyncio.ensure_future(self._read())
            # Its error is its callers'; read here too, so that one whose callers all hung up is not reported as
            # an exception never retrieved.
            self._refreshing.add_done_callback(lambda read: read.cancelled() or read.exception())
        await asyncio.shield(self._refreshing)

    async def _read(self) -> None:
        async with self._unavailable:
            members = await self._redis.smembers(self._keys.models)
        served = {parsed for member in members if (parsed := self._parse(member)) is not None}
        for name, version in sorted(served):
            known = self._versions.setdefault(name, {})
            if version not in known:
                known[version] = self._build(name, version, self._keys.served(name, version))
                log.info("model %s version %d: now routed to (queue %s)", name, version,
                         known[version].keys.requests)
        for gone in [v for v in self.all_versions() if (v.name, v.version) not in served]:
            log.info("model %s version %d: retired (no longer in %s)", gone.name, gone.version, self._keys.models)
            del self._versions[gone.name][gone.version]
            if not self._versions[gone.name]:
                del self._versions[gone.name]
            self._retiring.append(gone)
        await self._close_retired()
        versions = list(self.all_versions())
        for version, outcome in zip(versions, await asyncio.gather(*(v.catalog.refresh() for v in versions),
                                                                   return_exceptions=True)):
            if isinstance(outcome, BaseException):  # one version's keys unreadable: the others' views still count
                log.log(logging.DEBUG if isinstance(outcome, ServiceError) else logging.ERROR,
                        "could not read the workers of model %s version %d: %r", version.name, version.version,
                        outcome)

    def _parse(self, member: bytes) -> tuple[str, int] | None:
        parsed = Keys.parse_model_member(member.decode(errors="replace"))
        if parsed is None:
            log.warning("ignoring %r in %s: not <name>/<version>", member[:200], self._keys.models)
        return parsed

    async def _close_retired(self) -> None:
        """Close the connections of retired versions that no request waits on any more."""
        for version in [v for v in self._retiring if v.gateway.in_flight == 0]:
            self._retiring.remove(version)
            if version.pool is not None:
                await version.pool.aclose()

    async def aclose(self) -> None:
        """Close every version's own connections (at shutdown: nothing waits any more)."""
        for version in [*self.all_versions(), *self._retiring]:
            if version.pool is not None:
                await version.pool.aclose()
        self._versions.clear()
        self._retiring.clear()

    async def keep_fresh(self) -> None:
        """The background task of an API process. Nothing ends it but cancellation: a stale view would route to a
        version that is gone, and the cache answer with its answers."""
        while True:
            try:
                await self.refresh()
            except ServiceError as exc:
                log.debug("could not read the models: %s", exc.message)  # Redis away: it comes back
            except Exception:  # noqa: BLE001 - see above; the traceback is logged
                log.exception("reading the models failed; trying again")
            await asyncio.sleep(REFRESH_INTERVAL_S)


def _down(what: str) -> ServiceError:
    return ServiceError(ErrorKind.UNAVAILABLE, f"no live worker serves {what} (no heartbeat in Redis)",
                        retry_after_s=1)
