"""Several models, and versions of them, behind one API (api/models.py): requests routed by name and version, 404 for
what was never served, 503 for what has no live worker, and one model's full queue or busy slots never refusing
another's requests. Fake workers on fakeredis, each marking its labels with who answered."""

import asyncio
import contextlib

import fakeredis
import httpx
import pytest

from api.app import create_app
from api.catalog import ModelView
from api.errors import ServiceError
from api.models import MISS_REFRESH_S, ModelRouter, ModelVersion
from common.keys import Keys
from tests.unit.api_harness import KEYS, fake_worker, run, served_keys, settings

INFER = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["good"]}]}


@contextlib.asynccontextmanager
async def deployment(s, workers, *, idle=()):
    """The API with fake workers: ``workers`` (name, version, mark) answer, ``idle`` (name, version) take nothing."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(fake_worker(fakeredis.FakeAsyncRedis(server=server), s, stop, name=name,
                                             version=version, mark=mark, worker_id=f"{name}-{version}"))
             for name, version, mark in workers]
    tasks += [asyncio.create_task(fake_worker(fakeredis.FakeAsyncRedis(server=server), s, stop, name=name,
                                              version=version, answer=False, worker_id=f"{name}-{version}"))
              for name, version in idle]
    await asyncio.sleep(0.05)  # the fake workers announce themselves
    app = create_app(s, client)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                yield http, client
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def label(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.json()["label"]


def test_requests_go_to_the_model_they_name_and_the_others_to_the_default():
    async def scenario():
        async with deployment(settings(), [("sentimentalyzer", 1, "@default"), ("alpha", 1, "@alpha")]) as (http, _):
            assert label(await http.post("/predict", json={"text": "good", "model": "alpha"})) == "POSITIVE@alpha"
            assert label(await http.post("/predict", json={"text": "good"})) == "POSITIVE@default"
            batch = await http.post("/predict/batch", json={"texts": ["good", "bad"], "model": "alpha"})
            assert [r["label"] for r in batch.json()["results"]] == ["POSITIVE@alpha", "NEGATIVE@alpha"]
            tei = await http.post("/predict", json={"inputs": "good"})  # names no model: the default
            assert tei.status_code == 200 and tei.json()[0]["label"] == "POSITIVE@default"
            infer = await http.post("/v2/models/alpha/infer", json=INFER)
            assert infer.status_code == 200, infer.text
            assert infer.json()["model_name"] == "alpha" and infer.json()["model_version"] == "1"
            assert infer.json()["outputs"][0]["data"] == ["POSITIVE@alpha"]
            info = await http.get("/info", params={"model": "alpha"})
            assert info.status_code == 200 and info.json()["served_model_name"] == "alpha"
            assert (await http.get("/info")).json()["served_model_name"] == "sentimentalyzer"

    run(scenario())


def test_a_name_never_served_is_404_everywhere_and_a_known_one_without_a_live_worker_is_503():
    async def scenario():
        async with deployment(settings(), [("sentimentalyzer", 1, "")]) as (http, client):
            for r in (await http.post("/predict", json={"text": "good", "model": "nope"}),
                      await http.post("/v2/models/nope/infer", json=INFER),
                      await http.get("/v2/models/nope"), await http.get("/v2/models/nope/ready"),
                      await http.get("/info", params={"model": "nope"})):
                assert r.status_code == 404, (r.request.url, r.text)
            assert "no model 'nope' here; served: 'sentimentalyzer'" in (
                await http.post("/predict", json={"text": "x", "model": "nope"})).json()["error"]["message"]
            # beta was served once (its member stays) but has no live worker now: known, and down.
            await client.sadd(KEYS.models, "beta/1")
            await asyncio.sleep(MISS_REFRESH_S)
            for r in (await http.post("/predict", json={"text": "good", "model": "beta"}),
                      await http.post("/v2/models/beta/infer", json=INFER), await http.get("/v2/models/beta/ready")):
                assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
            assert (await http.get("/v2/models/beta")).json()["versions"] == ["1"]  # metadata: known
            assert (await http.get("/readyz")).status_code == 200  # another model can answer

    run(scenario())


def test_a_model_name_is_refused_by_its_shape_before_anything_is_looked_up():
    async def scenario():
        async with deployment(settings(), [("sentimentalyzer", 1, "")]) as (http, _):
            for bad in ("a/b", "x" * 101, "", 7):
                r = await http.post("/predict", json={"text": "good", "model": bad})
                assert r.status_code == 422, (bad, r.text)

    run(scenario())


def test_unpinned_requests_go_to_the_highest_live_version_and_a_pin_to_its_own():
    async def scenario():
        s = settings()
        async with deployment(s, [("sentimentalyzer", 1, "@v1"), ("sentimentalyzer", 2, "@v2")]) as (http, client):
            assert label(await http.post("/predict", json={"text": "good"})) == "POSITIVE@v2"
            pinned = await http.post("/v2/models/sentimentalyzer/versions/1/infer", json=INFER)
            assert pinned.json()["outputs"][0]["data"] == ["POSITIVE@v1"] and pinned.json()["model_version"] == "1"
            unpinned = await http.post("/v2/models/sentimentalyzer/infer", json=INFER)
            assert unpinned.json()["outputs"][0]["data"] == ["POSITIVE@v2"] and unpinned.json()["model_version"] == "2"
            for version in ("3", "0", "01", "01x", "abc", "1" * 12):
                r = await http.post(f"/v2/models/sentimentalyzer/versions/{version}/infer", json=INFER)
                assert r.status_code == 404, (version, r.text)
            query = await http.post("/v2/models/sentimentalyzer/infer", params={"version": "1"}, json=INFER)
            assert query.json()["model_version"] == "2"  # a query parameter pins nothing
            listed = (await http.get("/v2/models")).json()["models"]
            assert listed == [{"name": "sentimentalyzer", "versions": ["1", "2"], "ready": True,
                               "routed_version": "2"}]
            index = (await http.post("/v2/repository/index")).json()
            assert [(m["version"], m["state"]) for m in index] == [("1", "READY"), ("2", "READY")]
            # Version 2's worker goes away: the name falls back to version 1, and a pin on 2 is 503.
            await client.delete(served_keys(s, 2).heartbeat("sentimentalyzer-2"))
            assert (await http.get("/readyz")).status_code == 200  # reads the workers again
            assert label(await http.post("/predict", json={"text": "good"})) == "POSITIVE@v1"
            r = await http.post("/v2/models/sentimentalyzer/versions/2/infer", json=INFER)
            assert r.status_code == 503 and "version 2 of model 'sentimentalyzer'" in r.json()["error"]
            index = (await http.post("/v2/repository/index")).json()
            assert [(m["version"], m["state"]) for m in index] == [("1", "READY"), ("2", "UNAVAILABLE")]

    run(scenario())


@pytest.mark.parametrize("limits,held,refusal", [
    (dict(max_in_flight=2, max_queue_depth=50), 2, "already serving 2 requests"),  # alpha's slots all taken
    (dict(max_in_flight=50, max_queue_depth=5), 1, "already has 5 texts"),  # alpha's queue full (all this client's)
], ids=["slots", "queue"])
def test_one_models_full_queue_or_busy_slots_refuse_none_of_anothers_requests(limits, held, refusal):
    """alpha's worker takes nothing: its requests hold its slots, its queue fills; the default model's requests are
    admitted and answered all the while."""
    async def scenario():
        s = settings(max_client_share=1.0, request_timeout_s=1.0, **limits)
        async with deployment(s, [("sentimentalyzer", 1, "")], idle=[("alpha", 1)]) as (http, _):
            holding = [asyncio.create_task(http.post("/predict/batch", json={"texts": ["a"] * 5, "model": "alpha"}))
                       for _ in range(held)]
            await asyncio.sleep(0.1)
            refused = await http.post("/predict", json={"text": "good", "model": "alpha"})
            assert refused.status_code == 429 and refusal in refused.json()["error"]["message"], refused.text
            for _ in range(5):
                assert label(await http.post("/predict", json={"text": "good"})) == "POSITIVE"
            assert [(await t).status_code for t in holding] == [504] * held  # nobody answers alpha

    run(scenario())


def test_metrics_say_which_model_each_request_and_queue_belongs_to():
    async def scenario():
        async with deployment(settings(), [("sentimentalyzer", 1, ""), ("alpha", 3, "")]) as (http, _):
            assert (await http.post("/predict", json={"text": "good", "model": "alpha"})).status_code == 200
            assert (await http.post("/v2/models/alpha/versions/3/infer", json=INFER)).status_code == 200
            assert (await http.post("/v2/models/nope/infer", json=INFER)).status_code == 404
            assert (await http.get("/v2/models/alpha/bogus")).status_code == 404  # no such route
            body = (await http.get("/metrics")).text
        assert 'sentimentalyzer_requests_total{model="alpha",route="/predict",status="200"} 1.0' in body
        assert ('sentimentalyzer_requests_total{model="alpha",route="/v2/models/{model}/versions/{version}/infer",'
                'status="200"} 1.0') in body
        # A name nobody serves is no label value (a client cannot make up series).
        assert 'sentimentalyzer_requests_total{model="",route="/v2/models/{model}/infer",status="404"} 1.0' in body
        assert 'sentimentalyzer_requests_total{model="",route="other",status="404"} 1.0' in body
        assert 'sentimentalyzer_texts_total{model="alpha"} 2.0' in body
        assert 'sentimentalyzer_texts_total{model="sentimentalyzer"} 0.0' in body
        assert 'sentimentalyzer_live_workers{model="alpha",version="3"} 1.0' in body
        assert 'sentimentalyzer_queue_depth{model="sentimentalyzer",version="1"} 0.0' in body

    run(scenario())


class _Catalog:
    def __init__(self, workers: int) -> None:
        self.view = ModelView(workers=workers)

    async def refresh(self) -> ModelView:
        return self.view


def _router(client, live: dict[tuple[str, int], int]) -> ModelRouter:
    def build(name: str, version: int, keys: Keys) -> ModelVersion:
        return ModelVersion(name, version, keys, None, None, _Catalog(live.get((name, version), 0)))  # type: ignore

    return ModelRouter(client, Keys("r"), "default", build)


def test_requests_for_a_name_nobody_serves_read_the_models_at_most_once_per_interval():
    async def scenario():
        client = fakeredis.FakeAsyncRedis()
        reads = 0
        smembers = client.smembers

        async def counted(key):
            nonlocal reads
            reads += 1
            return await smembers(key)

        client.smembers = counted
        router = _router(client, {("a", 1): 1})
        await client.sadd(Keys("r").models, "a/1", "not a member", "b/0")
        assert (await router.route("a")).version == 1 and reads == 1  # not seen yet: read once, then found
        for _ in range(50):
            with pytest.raises(ServiceError) as refused:
                await router.route("zzz")
            assert refused.value.kind.value == "not_found"
        assert reads == 1  # read just now: not again
        await asyncio.sleep(MISS_REFRESH_S)
        with pytest.raises(ServiceError):
            await router.route("zzz")
        assert reads == 2
        assert router.names() == ["a", "default"]  # the malformed members are ignored

    run(scenario())


def test_the_default_model_is_known_before_any_worker_announced_it():
    async def scenario():
        router = _router(fakeredis.FakeAsyncRedis(), {})
        with pytest.raises(ServiceError) as down:
            await router.route(None)
        assert down.value.kind.value == "unavailable" and down.value.retry_after_s == 1
        with pytest.raises(ServiceError) as pinned:
            router.pick(None, 1)
        assert pinned.value.message == "model 'default' has no version 1 here; versions: none yet"
        with pytest.raises(ServiceError) as unknown:
            await router.route("other")
        assert unknown.value.kind.value == "not_found"

    run(scenario())


@pytest.mark.parametrize("member,parsed", [("a/1", ("a", 1)), ("a.b-c_d/120", ("a.b-c_d", 120)), ("a/0", None),
                                          ("a/01", None), ("a/x", None), ("/1", None), ("a b/1", None),
                                          ("a/1/2", None), ("a/1234567890", None)])
def test_a_models_member_is_a_name_and_a_positive_version(member, parsed):
    assert Keys.parse_model_member(member) == parsed
    if parsed:
        assert Keys.model_member(*parsed) == member


def test_a_model_versions_keys_share_one_hash_tag_and_the_deployments_stay_apart():
    keys = Keys("p").served("sst2", 2)
    tags = {key.split("{", 1)[1].split("}", 1)[0] for key in (*keys.persistent() - {keys.models},
                                                               keys.reply("r"), keys.inflight("w"))}
    assert tags == {"sst2"} and keys.requests == "p:{sst2}:v2:requests" and keys.models == "p:models"
    assert keys.requests != Keys("p").served("sst2", 1).requests != Keys("p").served("sst", 2).requests
    for bad in ("a}b", "a{b", "", "a:b"):
        with pytest.raises(ValueError):
            Keys("p").served(bad, 1)
    with pytest.raises(ValueError):
        Keys("p").served("a", 0)


def test_a_version_removed_from_the_models_is_no_longer_routed_to_and_its_series_go():
    async def scenario():
        s = settings()
        async with deployment(s, [("sentimentalyzer", 1, ""), ("beta", 1, "")]) as (http, client):
            assert (await http.post("/predict", json={"text": "good", "model": "beta"})).status_code == 200
            # beta's worker is gone for good (its heartbeat with it) and the operator retires the version.
            await client.delete(served_keys(s, 1, "beta").heartbeat("beta-1"))
            await client.srem(KEYS.models, "beta/1")
            assert (await http.get("/readyz")).status_code == 200  # reads the models again
            r = await http.post("/predict", json={"text": "good", "model": "beta"})
            assert r.status_code == 404, r.text
            assert [m["name"] for m in (await http.get("/v2/models")).json()["models"]] == ["sentimentalyzer"]
            cluster = [line for line in (await http.get("/metrics")).text.splitlines()
                       if 'model="beta",version="1"' in line and "sentimentalyzer_in_flight" not in line]
            assert cluster == []  # the cluster's series of a retired version go (this process's own gauge stays)

    run(scenario())


def test_one_versions_unreadable_workers_leave_the_others_routed_and_the_api_ready():
    async def scenario():
        s = settings()
        async with deployment(s, [("sentimentalyzer", 1, ""), ("beta", 1, "")]) as (http, client):
            await client.delete(served_keys(s, 1, "beta").workers)
            await client.set(served_keys(s, 1, "beta").workers, "not a hash")  # its reads fail (WRONGTYPE)
            for _ in range(3):
                assert (await http.get("/readyz")).status_code == 200
                assert label(await http.post("/predict", json={"text": "good"})) == "POSITIVE"
            assert (await http.post("/predict", json={"text": "x", "model": "nope"})).status_code == 404

    run(scenario())


def test_requests_in_flight_are_counted_per_model_version():
    async def scenario():
        s = settings(request_timeout_s=1.0)
        async with deployment(s, [("sentimentalyzer", 2, "")], idle=[("sentimentalyzer", 1)]) as (http, _):
            held = [asyncio.create_task(http.post("/v2/models/sentimentalyzer/versions/1/infer", json=INFER))
                    for _ in range(3)]
            await asyncio.sleep(0.1)
            assert label(await http.post("/predict", json={"text": "good"})) == "POSITIVE"  # version 2
            body = (await http.get("/metrics")).text
            assert 'sentimentalyzer_in_flight{model="sentimentalyzer",version="1"} 3.0' in body
            assert 'sentimentalyzer_in_flight{model="sentimentalyzer",version="2"} 0.0' in body
            assert [(await t).status_code for t in held] == [504] * 3

    run(scenario())


def test_a_request_for_a_model_without_a_live_worker_is_counted_under_its_name():
    async def scenario():
        async with deployment(settings(), [("sentimentalyzer", 1, "")]) as (http, client):
            await client.sadd(KEYS.models, "beta/1")
            await asyncio.sleep(MISS_REFRESH_S)
            assert (await http.post("/predict", json={"text": "x", "model": "beta"})).status_code == 503
            body = (await http.get("/metrics")).text
        assert 'sentimentalyzer_requests_total{model="beta",route="/predict",status="503"} 1.0' in body

    run(scenario())


def refusal(look) -> str:
    """The message of the ServiceError ``look()`` raises."""
    with pytest.raises(ServiceError) as refused:
        look()
    return refused.value.message


class _FailingCatalog(_Catalog):
    def __init__(self, workers: int, error: BaseException) -> None:
        super().__init__(workers)
        self.error = error

    async def refresh(self) -> ModelView:
        raise self.error


class _Gateway:
    in_flight = 0


class _Pool:
    closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def test_the_router_says_what_it_routes_to_retires_and_cannot_read(caplog):
    import logging

    from api.errors import ErrorKind

    catalogs = {("a", 1): _Catalog(1), ("a", 2): _Catalog(0), ("b", 1): _FailingCatalog(1, ServiceError(
        ErrorKind.UNAVAILABLE, "away")), ("c", 1): _FailingCatalog(1, RuntimeError("boom"))}
    pools = {key: _Pool() for key in catalogs}
    gateways = {key: _Gateway() for key in catalogs}

    def build(name: str, version: int, keys: Keys) -> ModelVersion:
        key = (name, version)
        return ModelVersion(name, version, keys, gateways[key], None, catalogs[key], pools[key])  # type: ignore

    async def scenario():
        client = fakeredis.FakeAsyncRedis()
        router = ModelRouter(client, Keys("r"), "a", build)
        await client.sadd(Keys("r").models, "a/1", "a/2", "b/1", "c/1", b"\xff/1", "a/01")
        with caplog.at_level(logging.DEBUG, logger="api.models"):
            await router.refresh()
        assert router.names() == ["a", "b", "c"] and router.versions("nope") == [] and router.is_known("c")
        assert not router.is_known("d") and router.is_known("a")
        assert [v.version for v in router.versions("a")] == [1, 2]
        assert router.routed("b").name == "b" and router.routed().version == 1  # the failing read kept b's view
        assert router.routed("nope") is None
        with pytest.raises(ServiceError) as pinned:
            await router.find("a", 3)
        assert pinned.value.message == "model 'a' has no version 3 here; versions: 1, 2"
        assert refusal(lambda: router.pick("a", 3)) == "model 'a' has no version 3 here; versions: 1, 2"
        catalogs[("c", 1)].view = ModelView(workers=0)
        assert refusal(lambda: router.pick("c")) == "no live worker serves model 'c' (no heartbeat in Redis)"
        assert refusal(lambda: router.pick("a", 2)) == ("no live worker serves version 2 of model 'a' (no heartbeat "
                                                        "in Redis)")
        assert refusal(lambda: router.pick("zz", 1)) == "no model 'zz' here; served: 'a', 'b', 'c'"
        catalogs[("a", 1)].view = ModelView(workers=0)
        assert refusal(lambda: router.pick(None)) == "no live worker serves model 'a' (no heartbeat in Redis)"
        # b is retired while a request still waits on it: its pool is closed once nothing does.
        gateways[("b", 1)].in_flight = 1
        await client.srem(Keys("r").models, "b/1")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="api.models"):
            await router.refresh()
        assert not router.is_known("b") and pools[("b", 1)].closed == 0
        gateways[("b", 1)].in_flight = 0
        await router.refresh()
        assert pools[("b", 1)].closed == 1
        await router.refresh()
        assert pools[("b", 1)].closed == 1  # once
        await router.aclose()
        assert pools[("a", 1)].closed == pools[("c", 1)].closed == 1
        return [(r.levelname, r.getMessage()) for r in caplog.records]

    records = asyncio.run(scenario())
    assert ("INFO", "model b version 1: retired (no longer in r:models)") in records


def test_the_router_logs_what_it_could_not_read(caplog):
    import logging

    from api.errors import ErrorKind

    def build(name: str, version: int, keys: Keys) -> ModelVersion:
        error = ServiceError(ErrorKind.UNAVAILABLE, "away") if name == "b" else RuntimeError("boom")
        return ModelVersion(name, version, keys, _Gateway(), None, _FailingCatalog(1, error))  # type: ignore

    async def scenario():
        client = fakeredis.FakeAsyncRedis()
        await client.sadd(Keys("r").models, "b/1", "c/2", b"\xff/1")
        with caplog.at_level(logging.DEBUG, logger="api.models"):
            await ModelRouter(client, Keys("r"), "a", build).refresh()

    asyncio.run(scenario())
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("WARNING", "ignoring b'\\xff/1' in r:models: not <name>/<version>") in records
    assert ("DEBUG", "could not read the workers of model b version 1: ServiceError('away')") in records  # Redis
    assert ("ERROR", "could not read the workers of model c version 2: RuntimeError('boom')") in records  # a bug


def test_a_model_name_of_the_longest_length_is_a_member():
    name = "n" * 100
    assert Keys.parse_model_member(f"{name}/1") == (name, 1) and Keys.parse_model_member(f"{name}n/1") is None


def test_a_model_name_and_version_at_their_limits_are_keys_and_beyond_them_refused_saying_why():
    from common.keys import MAX_MODEL_VERSION

    assert Keys("p").served("n" * 100, MAX_MODEL_VERSION).requests == f"p:{{{'n' * 100}}}:v{MAX_MODEL_VERSION}:requests"
    with pytest.raises(ValueError) as long:
        Keys("p").served("n" * 101, 1)
    assert str(long.value) == f"model name {'n' * 101!r} must be up to 100 letters, digits, '_', '.', '-'"
    with pytest.raises(ValueError) as high:
        Keys("p").served("n", MAX_MODEL_VERSION + 1)
    assert str(high.value) == "model version 1000000000 must be 1 to 999999999"
