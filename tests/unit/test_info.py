"""``GET /info`` on the real app (fakeredis, a fake worker): the model the live workers serve, BACKEND=auto's
decision as a worker describes it, and 503 while none does."""

from tests.unit.api_harness import CARD, KEYS, run, running, settings
from tests.unit.test_api_shapes import ready


def test_info_describes_the_model_the_live_workers_serve():
    async def scenario():
        async with running(settings(max_in_flight=40)) as (http, _):
            await ready(http)
            info = (await http.get("/info")).json()
        assert info["model_id"] == CARD.model and info["model_sha"] == CARD.fingerprint
        assert info["labels"] == ["NEGATIVE", "POSITIVE"]
        assert info["model_type"] == {"classifier": {"id2label": {"0": "NEGATIVE", "1": "POSITIVE"},
                                                     "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}}
        assert (info["max_input_length"], info["max_client_batch_size"], info["max_concurrent_requests"]) == (16, 5, 40)
        assert (info["max_batch_requests"], info["max_batch_tokens"], info["workers"]) == (64, 512, 1)
        assert info["backends"] == {"fake": 1} and info["served_model_name"] == "sentimentalyzer"
        assert info["default_function"] == "softmax" and info["response_cache_ttl_s"] == 0

    run(scenario())


def test_info_shows_the_table_backend_auto_measured_as_the_worker_describes_it():
    from types import SimpleNamespace

    from common.model_card import BACKEND_CHOICE_FIELD
    from engine.autotune.choice import Choice, Measured
    from worker.main import backend_choice

    choice = Choice("openvino-bf16", 256, [Measured("torch", True, 0, 0.0, 468.6, runs=[470.0, 468.6, 420.0]),
                                           Measured("openvino-bf16", False, 0, 5.1e-3, 1419.2,
                                                    runs=[1419.2, 1400.0, 1430.0]),
                                           Measured("onnxruntime", True, error="could not export")],
                    {512: 1497.2, 256: 1598.8}, from_cache="/cache/choices/x.json", others_cpu_share=0.31)
    assert backend_choice(SimpleNamespace(choice=None)) == ""  # a named backend: nothing measured

    async def scenario():
        async with running(settings()) as (http, client):
            await ready(http)
            assert (await http.get("/info")).json()["auto_choice"] is None
            await client.hset(KEYS.heartbeat("fake-1"), BACKEND_CHOICE_FIELD,
                              backend_choice(SimpleNamespace(choice=choice)))
            return (await http.get("/info")).json()["auto_choice"]

    shown = run(scenario())
    assert (shown["backend"], shown["max_batch_tokens"], shown["measured_at_start"]) == ("openvino-bf16", 256, False)
    assert (shown["host_busy"], shown["others_cpu_share"]) == (True, 0.31)  # measured on a busy host: it says so
    assert shown["table"] == [
        {"backend": "torch", "kind": "exact", "label_flips": 0, "max_prob_diff": 0.0, "sentences_per_s": 468.6,
         "rounds": 3, "spread": round(50 / 468.6, 3), "error": None},
        {"backend": "openvino-bf16", "kind": "approximate", "label_flips": 0, "max_prob_diff": 5.1e-3,
         "sentences_per_s": 1419.2, "rounds": 3, "spread": round(30 / 1419.2, 3), "error": None},
        {"backend": "onnxruntime", "kind": "failed", "label_flips": None, "max_prob_diff": None,
         "sentences_per_s": None, "rounds": None, "spread": None, "error": "could not export"}]
    assert shown["budgets"] == {"256": 1598.8, "512": 1497.2}


def test_info_without_a_live_worker_is_503():
    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            r = await http.get("/info")
            assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"

    run(scenario())
