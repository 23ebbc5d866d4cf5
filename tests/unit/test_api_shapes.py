"""The API's request shapes on the real app (fakeredis, a fake worker): the pipeline's options and pairs, text-
embeddings-inference's /predict, the Open Inference Protocol's routes, the response cache, and what
OpenAPI says of them."""

import json

import pytest

from api.protocols import request_models
from common.options import MAX_TOP_K, Options
from tests.unit.api_harness import KEYS, fake_answer, run, running, settings
from tests.unit.fakes import DownRedis


def ranked(text, index=0, top_k=None):
    return [{"label": p.label, "score": p.score} for p in fake_answer(text, index, top_k)]


async def ready(http):
    """Wait for the fake worker's heartbeat, as clients do; /readyz also refreshes the API's view of the model."""
    for _ in range(200):
        if (await http.get("/readyz")).status_code == 200:
            return
    raise AssertionError("the fake worker never became ready")


def test_default_answers_keep_their_bytes_and_options_travel_with_each_text():
    async def scenario():
        seen = []
        async with running(settings(), seen=seen) as (http, _):
            await ready(http)
            r = await http.post("/predict", json={"text": "good"})
            assert r.content == b'{"label":"POSITIVE","score":0.5}'  # as before options existed
            r = await http.post("/predict", json={"text": "good", "text_pair": "day", "top_k": 2,
                                                  "function_to_apply": "sigmoid", "truncate": False,
                                                  "truncation_direction": "Left"})
            assert r.status_code == 200 and r.json() == ranked("goodday", top_k=2)
            r = await http.post("/predict", json={"text": "bad", "top_k": None})
            assert r.json() == ranked("bad")
        assert [(i.text, i.text_pair, i.options) for i in seen] == [
            ("good", None, Options()),
            ("good", "day", Options(top_k=2, function="sigmoid", truncate=False, truncation_side="left")),
            ("bad", None, Options(top_k=None))]

    run(scenario())


def test_a_batch_mixes_texts_and_pairs_and_takes_the_options_for_all():
    async def scenario():
        seen = []
        async with running(settings(), seen=seen) as (http, _):
            await ready(http)
            body = {"texts": ["good", {"text": "bad", "text_pair": "good"}, {"text": "so so"}], "top_k": 1}
            for route in ("/predict/batch", "/predict"):  # /predict takes the batch shape too
                r = await http.post(route, json=body)
                assert r.status_code == 200
                assert r.json() == {"results": [ranked("good", 0, 1), ranked("badgood", 1, 1), ranked("so so", 2, 1)]}
            r = await http.post("/predict/batch", json={"texts": ["good", "bad"]})
            assert r.json() == {"results": [{"label": "POSITIVE", "score": 0.5}, {"label": "NEGATIVE", "score": 0.51}]}
        assert [i.text_pair for i in seen[:3]] == [None, "good", None]

    run(scenario())


def test_text_embeddings_inference_shapes_are_answered_in_its_shape():
    async def scenario():
        seen = []
        async with running(settings(), seen=seen) as (http, _):
            await ready(http)
            r = await http.post("/predict", json={"inputs": "good"})
            assert r.json() == ranked("good")  # every label, best first
            r = await http.post("/predict", json={"inputs": ["good", "pair"], "raw_scores": True})
            assert r.json() == ranked("goodpair")
            r = await http.post("/predict", json={"inputs": [["bad"], ["good", "x"]], "truncate": False,
                                                  "truncation_direction": "Left"})
            assert r.json() == [ranked("bad", 0), ranked("goodx", 1)]
            r = await http.post("/predict", json={"inputs": ["good"]})
            assert r.json() == ranked("good")
            assert all(k in r.headers for k in ("x-queue-time", "x-inference-time", "x-total-time"))
        assert [(i.text_pair, i.options) for i in seen] == [
            (None, Options(top_k=None)), ("pair", Options(top_k=None, function="none")),
            (None, Options(top_k=None, truncate=False, truncation_side="left")),
            ("x", Options(top_k=None, truncate=False, truncation_side="left")), (None, Options(top_k=None))]

    run(scenario())


def test_the_inference_apis_shape_gets_a_ranked_list_per_input_as_huggingface_hub_reads_it():
    async def scenario():
        seen = []
        async with running(settings(), seen=seen) as (http, _):
            await ready(http)
            r = await http.post("/predict", json={"inputs": "good", "parameters": {}})
            assert r.json() == [ranked("good")]
            r = await http.post("/predict", json={"inputs": [["good"], ["bad"]],
                                                  "parameters": {"top_k": 1, "function_to_apply": "sigmoid"}})
            assert r.json() == [ranked("good", 0, 1), ranked("bad", 1, 1)]
            r = await http.post("/predict", json={"inputs": "good", "parameters": {"top_k": 3}})
            assert r.status_code == 422  # beyond the labels, here too
        assert [i.options for i in seen] == [Options(top_k=None), Options(top_k=1, function="sigmoid"),
                                             Options(top_k=1, function="sigmoid")]

    run(scenario())


@pytest.mark.parametrize("body,message", [
    ({"text": "a", "texts": ["b"]}, "exactly one of 'text'"),
    ({"inputs": "ok", "parameters": {"top_k": 1, "extra": 2}}, "parameters.extra: Extra inputs are not permitted"),
    ({"inputs": []}, "inputs"),
    ({"inputs": ["a", "b", "c"]}, "inputs"),
    ({"inputs": [["a", "b", "c"]]}, "inputs"),
    ({"inputs": "ok", "top_k": 2}, "top_k: Extra inputs are not permitted"),
    ({"inputs": "ok", "raw_scores": "yes"}, "raw_scores: Input should be a valid boolean"),
    ({"texts": [{"text_pair": "x"}]}, "texts"),
    ({"texts": ["ok"], "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
])
def test_wrong_shapes_are_422_and_never_enqueued(body, message):
    async def scenario():
        async with running(settings(), worker=False) as (http, client):
            r = await http.post("/predict", json=body)
            assert r.status_code == 422 and message in r.json()["error"]["message"], r.json()
            assert await client.llen(KEYS.requests) == 0

    run(scenario())


def test_top_k_beyond_the_models_labels_is_422_before_queueing_and_openapi_states_the_limit():
    async def scenario():
        async with running(settings()) as (http, client):
            await ready(http)
            r = await http.post("/predict", json={"text": "good", "top_k": 3})
            assert r.status_code == 422 and r.json()["error"]["message"] == "top_k is 3 but the model has 2 label(s)"
            assert await client.llen(KEYS.requests) == 0
            schemas = (await http.get("/openapi.json")).json()["components"]["schemas"]
            for name in ("PredictRequest", "PredictBatchRequest"):
                assert {"type": "integer", "minimum": 1, "maximum": 2} in schemas[name]["properties"]["top_k"]["anyOf"]

    run(scenario())


def test_request_models_built_knowing_the_models_labels_state_them_as_top_ks_maximum():
    """As the naive server builds them (it loads the model first); the API's come with MAX_TOP_K, and its served
    OpenAPI document states the labels once a worker has described the model (the test above)."""
    known = request_models(settings(), max_top_k=2)
    unknown = request_models(settings())
    for models, maximum in ((known, 2), (unknown, MAX_TOP_K)):
        for key, shape in models.shapes.items():
            schema = shape.model.model_json_schema()
            top_k = schema["properties"]["top_k"] if "top_k" in schema["properties"] else (
                schema["$defs"]["InferenceParameters"]["properties"]["top_k"])
            assert {"type": "integer", "minimum": 1, "maximum": maximum} in top_k["anyOf"], key


@pytest.mark.parametrize("key", ["text", "texts"])
def test_a_dialect_of_our_bodies_adds_its_field_and_parses_the_bodies_that_set_it(key):
    """Adding a protocol that speaks through one of our bodies is one module: its Dialect names the body's key."""
    from pydantic import Field

    from api.protocols import ours
    from api.protocols.predict import request_models as build_models
    from api.protocols.spec import Dialect, Job, Protocol

    def job_of(body):
        return Job([], render=lambda answers: "dialect") if body.flavour is not None else None

    dialect = Protocol("dialect", dialect=Dialect(key, lambda build: {"flavour": (str | None, Field(None))}, job_of))
    models = build_models((ours.PROTOCOL, dialect), settings())
    model = models.shapes[key].model
    assert "flavour" in model.model_json_schema()["properties"]
    value = "good" if key == "text" else ["good"]
    assert models.job_of(model(**{key: value, "flavour": "x"})).render([]) == "dialect"
    assert models.job_of(model(**{key: value})).queries[0].text == "good"  # ours, as without the dialect


def test_open_inference_protocol_routes_answer_in_its_shapes():
    async def scenario():
        async with running(settings(served_model_name="sst2")) as (http, _):
            await ready(http)
            assert (await http.get("/v2")).json()["name"] == "sentimentalyzer"
            assert (await http.get("/v2/health/live")).status_code == 200
            assert (await http.get("/v2/health/ready")).status_code == 200
            assert (await http.get("/v2/models/sst2/ready")).status_code == 200
            meta = (await http.get("/v2/models/sst2")).json()
            assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
            assert [o["name"] for o in meta["outputs"]] == ["label", "score"]
            config = (await http.get("/v2/models/sst2/versions/1/config")).json()
            assert config["input"][0]["data_type"] == "TYPE_STRING"
            body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]}
            r = await http.post("/v2/models/sst2/infer", json=body)
            assert r.status_code == 200
            outputs = {o["name"]: o for o in r.json()["outputs"]}
            assert outputs["label"]["data"] == ["POSITIVE", "NEGATIVE"]
            assert outputs["score"]["data"] == [0.5, pytest.approx(0.51, abs=1e-7)]  # FP32
            for path in ("/v2/models/other/infer", "/v2/models/sst2/versions/2/infer"):
                r = await http.post(path, json=body)
                assert r.status_code == 404 and isinstance(r.json()["error"], str)  # the protocol's error body
            r = await http.post("/v2/models/sst2/infer", json={"inputs": []})
            assert r.status_code == 422 and isinstance(r.json()["error"], str)
            r = await http.get("/v2/nothing-here")
            assert r.status_code == 404 and isinstance(r.json()["error"], str)

    run(scenario())


def test_the_response_cache_answers_a_repeat_without_queueing_and_keys_by_options():
    async def scenario():
        seen = []
        async with running(settings(cache_ttl_s=60), seen=seen) as (http, client):
            await ready(http)
            first = await http.post("/predict/batch", json={"texts": ["good", "bad"]})
            again = await http.post("/predict/batch", json={"texts": ["good", "bad"]})
            assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
            assert first.content == again.content and len(seen) == 2  # the repeat never reached a worker
            partly = await http.post("/predict/batch", json={"texts": ["new", "good"]})
            assert partly.headers["x-cache"] == "miss" and [i.text for i in seen[2:]] == ["new"]
            # the cached "good" (index 0 of the first call) next to the fresh "new" (index 0 of this one)
            assert partly.json()["results"] == [{"label": "NEGATIVE", "score": 0.5},
                                                {"label": "POSITIVE", "score": 0.5}]
            other = await http.post("/predict", json={"text": "good", "top_k": 2})  # other options: another entry
            assert other.headers["x-cache"] == "miss" and len(seen) == 4
            ttl = await client.ttl((await client.keys(KEYS.cached("*")))[0])
            assert 0 < ttl <= 60
            metrics = (await http.get("/metrics")).text
        assert 'sentimentalyzer_cache_hits_total{model="sentimentalyzer"} 3.0' in metrics
        assert 'sentimentalyzer_cache_misses_total{model="sentimentalyzer"} 4.0' in metrics

    run(scenario())


def test_a_failing_cache_is_a_miss_never_a_failed_request():
    async def scenario():
        async with running(settings(cache_ttl_s=60), cache_client=DownRedis()) as (http, _):
            await ready(http)
            r = await http.post("/predict", json={"text": "good"})
            assert r.status_code == 200 and r.headers["x-cache"] == "miss"
            metrics = (await http.get("/metrics")).text
            assert 'sentimentalyzer_cache_errors_total{model="sentimentalyzer"} 2.0' in metrics  # read and write

    run(scenario())


def test_openapi_shows_every_predict_shape_with_examples():
    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            doc = (await http.get("/openapi.json")).json()
        body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        refs = {branch["$ref"].rsplit("/", 1)[1] for branch in body["oneOf"]}
        assert refs == {"PredictRequest", "PredictBatchRequest", "TeiPredictRequest"}
        schemas = doc["components"]["schemas"]
        assert all(schemas[name].get("examples") for name in refs)
        assert "/info" in doc["paths"] and "/v2/models/{model}/infer" in doc["paths"]
        infer = doc["paths"]["/v2/models/{model}/infer"]["post"]
        assert json.dumps(infer["requestBody"]).count("BYTES") >= 1

    run(scenario())


def queued_options(requests):
    """The options of every work item the API queued for these (route, body) requests, in queue order (the fake
    worker decodes each raw message it pops off the request list)."""
    async def scenario():
        seen = []
        async with running(settings(), seen=seen) as (http, _):
            await ready(http)
            for route, body in requests:
                r = await http.post(route, json=body)
                assert r.status_code == 200, (route, body, r.json())
        return [item.options for item in seen]

    return run(scenario())


def ours(field, value):
    """A body of our shapes with one option, on each route that takes it (four texts in all, one a pair in a
    batch)."""
    return [("/predict", {"text": "good", field: value}),
            ("/predict", {"texts": ["good", {"text": "bad", "text_pair": "x"}], field: value}),
            ("/predict/batch", {"texts": ["good"], field: value})]


@pytest.mark.parametrize("field,value,expected", [
    ("top_k", 2, Options(top_k=2)),
    ("top_k", None, Options(top_k=None)),
    ("function_to_apply", "sigmoid", Options(function="sigmoid")),
    ("function_to_apply", "none", Options(function="none")),
    ("function_to_apply", "softmax", Options(function="softmax")),  # the model's default, but named: kept
    ("truncate", False, Options(truncate=False)),
    ("truncation_direction", "left", Options(truncation_side="left")),
    ("truncation_direction", "Left", Options(truncation_side="left")),  # TEI's spelling
], ids=["top-k-2", "top-k-null", "sigmoid", "none", "softmax", "no-truncate", "left", "Left"])
def test_each_option_sent_alone_is_queued_with_the_defaults_for_the_others(field, value, expected):
    assert queued_options(ours(field, value)) == [expected] * 4


@pytest.mark.parametrize("extra,expected", [
    ({"truncate": False}, Options(top_k=None, truncate=False)),
    ({"truncation_direction": "Left"}, Options(top_k=None, truncation_side="left")),
    ({"truncation_direction": "left"}, Options(top_k=None, truncation_side="left")),
    ({"raw_scores": True}, Options(top_k=None, function="none")),
    ({"parameters": {}, "raw_scores": True}, Options(top_k=None, function="none")),  # raw logits there too
    ({"parameters": {"top_k": 2}}, Options(top_k=2)),
    ({"parameters": {"top_k": None}}, Options(top_k=None)),
    *[({"parameters": {"top_k": 1, "function_to_apply": f}}, Options(function=f)) for f in ("sigmoid", "none",
                                                                                              "softmax")],
    ({"parameters": {"top_k": 1}, "truncate": False}, Options(truncate=False)),
    ({"parameters": {"top_k": 1}, "truncation_direction": "Left"}, Options(truncation_side="left")),
    ({"parameters": {"top_k": 1}, "truncation_direction": "left"}, Options(truncation_side="left")),
], ids=["no-truncate", "Left", "left", "raw-scores", "hf-raw-scores", "hf-top-k-2", "hf-top-k-null", "hf-sigmoid",
        "hf-none", "hf-softmax", "hf-no-truncate", "hf-Left", "hf-left"])
def test_each_option_of_the_inputs_shape_sent_alone_is_queued_with_the_defaults_for_the_others(extra, expected):
    # text-embeddings-inference's body answers every label (top_k null); with the Inference API's parameters,
    # top_k 1 leaves every other option at its default unless one is sent.
    bodies = [("/predict", {"inputs": "good", **extra}), ("/predict", {"inputs": [["good"], ["bad", "x"]], **extra})]
    assert queued_options(bodies) == [expected] * 3


def test_a_body_naming_every_option_at_its_default_queues_a_default_item():
    requests = [(route, {**body, "top_k": 1, "function_to_apply": None, "truncate": True})
                for side in ("right", "Right") for route, body in ours("truncation_direction", side)]
    requests += [("/predict", {"inputs": "good", "parameters": {"top_k": 1, "function_to_apply": None},
                               "raw_scores": False, "truncate": True, "truncation_direction": "Right"}),
                 ("/predict", {"inputs": "good", "parameters": {"top_k": 1}, "truncate": None})]
    assert queued_options(requests) == [Options()] * 10
