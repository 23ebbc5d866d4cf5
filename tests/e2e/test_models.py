"""Several models behind one API (issue 23), as real processes on one Redis, with default settings unless said:
two models served by workers of their own, driven together under load through tritonclient and our JSON, one
model's workers SIGKILLed (then, in a test of its own, frozen) while the other's answers, error rate and latency stay
as they were; and a rollout that moves a name from version 1 to version 2 under load with no failed request and no
batch answered by two versions.
Each test prints its figures (run with -s)."""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from api.settings import ApiSettings
from common.keys import Keys
from common.protocol import Prediction
from harness.processes import stop_all
from harness.service import Service
from tests.answers import assert_discriminating, expected_answers, same_answer
from tests.e2e.conftest import start_service
from tests.helpers import report, sentences, wait_until

REQUEST_TIMEOUT_S = ApiSettings.model_fields["request_timeout_s"].default  # the deadline of a request (10 s)
LABELS_B = {0: "NEGATIVE_B", 1: "POSITIVE_B"}
TEXTS = sentences(120, seed=23)
OIP_TEXTS, BATCH_TEXTS = 3, 5  # texts per tritonclient infer call, per /predict/batch call
# A client that gets 503 waits before it tries again, as Retry-After (1 s) tells it to; these wait 0.25 s: more
# samples of the error path, still no spinning on the cores the other model's workers need.
BACKOFF_S = 0.25


# --- the models ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_b(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model: the tiny model's weights under other label names (NEGATIVE_B, POSITIVE_B), so that every
    single answer says which model gave it, with the tiny model's scores. Written in milliseconds (training another
    tiny model costs about a CPU minute on a loaded 2-core machine); a model of its own to the service (its config
    differs: another fingerprint, another BACKEND=auto decision, its own ONNX export)."""
    path = tmp_path_factory.mktemp("model-b") / "tiny-relabeled"
    shutil.copytree(tiny_model, path)
    config = json.loads((path / "config.json").read_text())
    config["id2label"] = {str(i): label for i, label in LABELS_B.items()}
    config["label2id"] = {label: i for i, label in LABELS_B.items()}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="module")
def references(tiny_model: Path, model_b: Path) -> dict[str, dict[str, Prediction]]:
    """Each model's answer to each text of TEXTS, computed in-process from its directory, one text per pass
    (torch): "A" is the tiny model, "B" the relabeled one."""
    from engine.hf_predictor import TransformersPredictor
    from engine.settings import ModelSettings

    answers = {}
    for model, path in (("A", tiny_model), ("B", model_b)):
        predictor = TransformersPredictor(ModelSettings(model=str(path), device="cpu", torch_threads=1))
        answers[model] = expected_answers(predictor, TEXTS)
        assert_discriminating(answers[model])
    return answers


def answered_by(references: Mapping[str, Mapping[str, Prediction]], texts: list[str],
                answers: list[tuple[str, float]]) -> set[str]:
    """The models (keys of ``references``) that gave these answers, one per text (the labels of A and B differ:
    exactly one per text, or none for a wrong answer, "?")."""
    who = set()
    for text, (label, score) in zip(texts, answers, strict=True):
        matches = [m for m, ref in references.items() if same_answer(label, score, ref[text])]
        who.add(matches[0] if len(matches) == 1 else "?")
    return who


# --- the clients --------------------------------------------------------------------------------------------------

@dataclass
class Call:
    """One request as its client saw it."""

    model: str
    via: str  # "triton" (tritonclient, /v2/models/<model>/infer), "predict", "batch" (our JSON)
    texts: list[str]
    started: float  # time.monotonic()
    ended: float = 0.0
    status: int = 0  # 0: no HTTP answer (connection error)
    answers: list[tuple[str, float]] = field(default_factory=list)  # (label, score) per text
    version: str | None = None  # the OIP response's model_version
    retry_after: str | None = None
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def describe(self) -> str:
        return (f"{self.via} {self.model} {self.texts[:2]}... -> {self.status} {self.error[:300]} "
                f"after {self.seconds:.2f}s")


class Client:
    """One closed-loop client of one model through one route: it sends a request, waits for its answer, sends
    the next (TEXTS round-robin, from its own offset)."""

    def __init__(self, url: str, model: str | None, via: str, offset: int, version: str = "") -> None:
        self.url, self.model, self.via, self.offset, self.version = url, model, via, offset, version
        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S + 20)
        self.triton = None
        if via == "triton":
            import tritonclient.http as triton

            self.triton = triton.InferenceServerClient(url.removeprefix("http://"), connection_timeout=10,
                                                       network_timeout=REQUEST_TIMEOUT_S + 20)

    def texts(self, i: int) -> list[str]:
        n = {"triton": OIP_TEXTS, "batch": BATCH_TEXTS, "predict": 1}[self.via]
        start = (self.offset + i * n) % len(TEXTS)
        return [TEXTS[(start + k) % len(TEXTS)] for k in range(n)]

    def call(self, i: int) -> Call:
        texts = self.texts(i)
        call = Call(self.model or "(default)", self.via, texts, time.monotonic())
        try:
            if self.via == "triton":
                self._infer(call)
            else:
                body = {"text": texts[0]} if self.via == "predict" else {"texts": texts}
                if self.model is not None:
                    body["model"] = self.model
                r = self.http.post("/predict" if self.via == "predict" else "/predict/batch", json=body)
                call.status, call.retry_after = r.status_code, r.headers.get("retry-after")
                if r.status_code == 200:
                    results = r.json()["results"] if self.via == "batch" else [r.json()]
                    call.answers = [(a["label"], a["score"]) for a in results]
                else:
                    call.error = r.text
        except Exception as exc:  # noqa: BLE001 - a failed call is a figure, not an error of the test
            call.error = repr(exc)
        call.ended = time.monotonic()
        return call

    def _infer(self, call: Call) -> None:
        import tritonclient.http as triton
        from tritonclient.utils import InferenceServerException

        tensor = triton.InferInput("text", [len(call.texts)], "BYTES")
        tensor.set_data_from_numpy(np.array([t.encode() for t in call.texts], dtype=np.object_))
        try:
            result = self.triton.infer(self.model, [tensor], model_version=self.version,
                                       outputs=[triton.InferRequestedOutput(o) for o in ("label", "score")])
        except InferenceServerException as exc:
            call.status, call.error = int(exc.status() or 0), exc.message()
            return
        call.status, call.version = 200, result.get_response()["model_version"]
        call.answers = [(label.decode(), float(score))
                        for label, score in zip(result.as_numpy("label"), result.as_numpy("score"), strict=True)]

    def close(self) -> None:
        self.http.close()
        if self.triton is not None:
            self.triton.close()


class Load:
    """Closed-loop clients, each in a thread of its own, from ``start()`` until ``stop()`` (or MAX_CALLS each):
    every call they made, in ``calls``."""

    MAX_CALLS = 3000  # per client: a bound on the load whatever the machine's speed

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in clients]

    def _run(self, client: Client) -> None:
        try:
            for i in range(self.MAX_CALLS):
                if self._stop.is_set():
                    return
                call = client.call(i)
                self.calls.append(call)  # list.append: atomic under the GIL
                if call.status == 503:
                    self._stop.wait(BACKOFF_S)
        finally:
            client.close()

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def halt(self) -> None:
        """Tell the clients to stop after their call in hand (a test that failed midway)."""
        self._stop.set()

    def stop(self) -> list[Call]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 30)
        assert not any(t.is_alive() for t in self._threads), "a client is stuck"
        return sorted(self.calls, key=lambda c: c.started)


def clients_of(url: str, model: str | None, offset: int = 0) -> list[Client]:
    """Five clients of ``model``: two through tritonclient, two single /predict, one /predict/batch."""
    vias = ["triton", "triton", "predict", "predict", "batch"]
    return [Client(url, model, via, offset + 17 * i) for i, via in enumerate(vias)]


def latency(calls: list[Call]) -> dict[str, float]:
    """Median, 90th percentile and max of the calls' durations, in ms; and their count."""
    seconds = sorted(c.seconds for c in calls)
    if not seconds:
        return {"n": 0}
    p90 = seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))]
    return {"n": len(seconds), "p50_ms": round(1000 * statistics.median(seconds), 1),
            "p90_ms": round(1000 * p90, 1), "max_ms": round(1000 * seconds[-1], 1)}


def start_workers(svc: Service, count: int, prefix: str, env: Mapping[str, str]) -> list:
    return [svc.start_worker(f"{prefix}-{i + 1}", env=env) for i in range(count)]


def models_listed(svc: Service) -> dict[str, dict]:
    r = httpx.get(f"{svc.url}/v2/models", timeout=10)
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["models"]}


def wait_for(condition: Callable[[], bool], timeout: float, what: str, svc: Service) -> float:
    """``wait_until``, with the processes' logs on timeout; returns when it held (time.monotonic())."""
    try:
        wait_until(condition, timeout, what, 0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}:\n{svc.dump_logs()}") from None
    return time.monotonic()


def stays_empty(client: redis.Redis, queue: str) -> bool:
    """The queue is empty, and still is 0.2 s later."""
    if client.llen(queue):
        return False
    time.sleep(0.2)
    return client.llen(queue) == 0


def infer_raw(svc: Service, path: str, texts: list[str]) -> httpx.Response:
    """An OIP infer call in JSON, as any HTTP client writes it (tritonclient hides the headers of an error)."""
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    return httpx.post(f"{svc.url}{path}", json=body, timeout=REQUEST_TIMEOUT_S + 20)


def _tensor(texts: list[str]):
    import tritonclient.http as triton

    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return tensor


# --- two models, one killed ---------------------------------------------------------------------------------------

def test_two_models_answer_apart_and_one_dying_leaves_the_other_unaffected(redis_server, tiny_model, model_b,
                                                                             references, tmp_path):
    # SERVED_MODEL_NAME=alpha for every process, as a user names the model of this deployment (and the API's
    # default model, for bodies that name none); beta's workers name theirs.
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=0, SERVED_MODEL_NAME="alpha")
    a_workers = start_workers(svc, 2, "alpha", {})
    b_workers = start_workers(svc, 2, "beta", {"SERVED_MODEL_NAME": "beta", "MODEL": str(model_b)})
    svc.wait_ready(4)
    refs = {"alpha": references["A"], "beta": references["B"]}
    load = None
    try:
        # --- idle: the models listed, each answers with its own model, a name never served is 404
        listed = models_listed(svc)
        assert set(listed) == {"alpha", "beta"}, listed
        assert all(m["ready"] and m["versions"] == ["1"] and m["routed_version"] == "1" for m in listed.values())
        import tritonclient.http as triton
        from tritonclient.utils import InferenceServerException

        tc = triton.InferenceServerClient(svc.url.removeprefix("http://"))
        index = tc.get_model_repository_index()
        assert sorted((m["name"], m["version"], m["state"]) for m in index) == [
            ("alpha", "1", "READY"), ("beta", "1", "READY")], index
        assert tc.is_model_ready("alpha") and tc.is_model_ready("beta")
        for model in ("alpha", "beta"):
            for via in ("triton", "predict", "batch"):
                client = Client(svc.url, model, via, offset=5)
                call = client.call(0)
                client.close()
                assert call.status == 200, call.describe()
                assert answered_by(refs, call.texts, call.answers) == {model}, (call.answers, call.describe())
        for path in ("/v2/models/gamma/infer", "/v2/models/gamma/versions/1/infer"):
            r = infer_raw(svc, path, ["good"])
            assert r.status_code == 404 and "no model 'gamma'" in r.json()["error"], (path, r.text)
        with pytest.raises(InferenceServerException) as missing:
            tc.infer("gamma", [_tensor(["good"])])
        tc.close()
        assert missing.value.status() == "404"
        for route, body in (("/predict", {"text": "good"}), ("/predict/batch", {"texts": ["good", "bad"]})):
            r = httpx.post(f"{svc.url}{route}", json={**body, "model": "gamma"}, timeout=10)
            assert r.status_code == 404 and r.json()["error"]["type"] == "not_found", (route, r.text)

        # --- both under load; then every worker of beta SIGKILLed
        load = Load(clients_of(svc.url, "alpha") + clients_of(svc.url, "beta", offset=60)).start()
        started = time.monotonic()
        time.sleep(1.5)  # warm-up: connections opened, both models' queues flowing
        warm = time.monotonic()
        time.sleep(6)
        killed = time.monotonic()
        for worker in b_workers:
            worker.signal(signal.SIGKILL)
        for worker in b_workers:
            worker.wait(10)
        # The API stops routing to beta once its workers are seen gone (no heartbeat, or work held past its lease).
        down = wait_for(lambda: not models_listed(svc)["beta"]["ready"], 30, "beta to be seen down", svc)
        # Long enough for the requests beta's workers held to reach their deadline, and a few seconds of 503s.
        time.sleep(max(0.0, killed + REQUEST_TIMEOUT_S + 2 - time.monotonic()))
        stopped = time.monotonic()
        calls = load.stop()

        alpha = [c for c in calls if c.model == "alpha"]
        beta = [c for c in calls if c.model == "beta"]
        a_before = [c for c in alpha if warm <= c.started and c.ended < killed]
        a_after = [c for c in alpha if c.started >= killed and c.ended <= stopped]
        a_dying = [c for c in a_after if c.started < down]  # beta's clients waiting on its dead workers
        a_down = [c for c in a_after if c.started >= down]  # beta's clients answered 503
        b_before = [c for c in beta if c.ended < killed]
        b_in_flight = [c for c in beta if c.started < killed <= c.ended]
        b_after_down = [c for c in beta if c.started >= down + 0.1]
        b_statuses = Counter(c.status for c in beta if c.ended >= killed)
        fig_a_before, fig_a_after = latency(a_before), latency(a_after)
        report("two_models", seconds=round(stopped - started, 1), alpha_calls=len(alpha), beta_calls=len(beta),
               alpha_failed=sum(c.status != 200 for c in alpha),
               alpha_by_route=dict(Counter(c.via for c in alpha)), beta_by_route=dict(Counter(c.via for c in beta)),
               beta_seen_down_after_s=round(down - killed, 2))
        report("two_models alpha latency", before_kill=fig_a_before, after_kill=fig_a_after,
               kill_to_beta_down=latency(a_dying), beta_down=latency(a_down),
               rps_before=round(len(a_before) / (killed - warm), 1),
               rps_after=round(len(a_after) / (stopped - killed), 1))
        report("two_models beta", before_kill=latency(b_before), answered_before_kill=sum(c.status == 200
                                                                                            for c in b_before),
               in_flight_at_kill=dict(Counter(c.status for c in b_in_flight)),
               in_flight_latency=latency(b_in_flight), statuses_after_kill=dict(b_statuses),
               after_down=latency(b_after_down))

        # alpha: every request answered, by alpha, correctly, and no slower than before beyond noise
        failed = [c.describe() for c in alpha if c.status != 200]
        assert not failed, failed[:10]
        for call in alpha:
            assert answered_by(refs, call.texts, call.answers) == {"alpha"}, call.describe()
            assert call.via != "triton" or call.version == "1"
        assert len(a_before) >= 20 and len(a_after) >= 20, (len(a_before), len(a_after))
        # (after the kill alpha has the CPU beta's workers used: faster, if anything; each window on its own too)
        for window in (a_after, a_dying, a_down):
            assert latency(window)["p50_ms"] <= 2 * fig_a_before["p50_ms"] + 50, (fig_a_before, latency(window))
        # beta, before the kill: answered by beta, correctly
        assert b_before and all(c.status == 200 for c in b_before), [c.describe() for c in b_before
                                                                     if c.status != 200][:10]
        for call in b_before:
            assert answered_by(refs, call.texts, call.answers) == {"beta"}, call.describe()
        # beta, once down: a fast 503 with Retry-After (our JSON shows the header); the requests its workers held
        # or that were queued before it was seen down end at their deadline (504)
        assert b_after_down, "no request of beta after it was seen down"
        for call in b_after_down:
            assert call.status == 503 and call.seconds < 2, call.describe()
            assert call.via == "triton" or call.retry_after == "1", call.describe()
        for call in (c for c in beta if c.ended >= killed):
            assert call.status in (200, 503, 504), call.describe()
            if call.status == 200:
                assert answered_by(refs, call.texts, call.answers) == {"beta"}, call.describe()
            if call.status == 504:
                assert call.started < down + 0.1, call.describe()  # admitted before beta was seen down
        # After the load: the same, request by request; the API stays ready (alpha is live)
        for path in ("/v2/models/beta/infer", "/v2/models/beta/versions/1/infer"):
            r = infer_raw(svc, path, ["good"])
            assert r.status_code == 503 and r.headers.get("retry-after") == "1", (path, r.status_code, r.text)
        r = httpx.post(f"{svc.url}/predict", json={"text": "good", "model": "beta"}, timeout=10)
        assert r.status_code == 503 and r.headers.get("retry-after") == "1", r.text
        listed = models_listed(svc)
        assert listed["alpha"]["ready"] and not listed["beta"]["ready"] and listed["beta"]["routed_version"] is None
        assert httpx.get(f"{svc.url}/readyz", timeout=10).status_code == 200
        assert all(w.alive() for w in a_workers)
    finally:
        if load is not None:
            load.halt()
        svc.stop()


# --- a rollout from version 1 to version 2 ------------------------------------------------------------------------

def test_a_rollout_from_version_1_to_2_under_load_fails_nothing_and_mixes_no_answer(redis_server, tiny_model,
                                                                                   model_b, references, tmp_path):
    name = "sentiment"
    # SERVED_MODEL_NAME: the name the deployment serves (and the API's default model), as a user names it.
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=0, SERVED_MODEL_NAME=name)
    v1_workers = start_workers(svc, 2, "v1", {"MODEL_VERSION": "1"})
    svc.wait_ready(2)
    refs = {"1": references["A"], "2": references["B"]}  # version 1 is the tiny model, version 2 model B
    v1_queue = Keys(svc.prefix).served(name, 1).requests
    client = redis.Redis.from_url(svc.redis_url)
    load = None
    try:
        # Clients of the name, unpinned: tritonclient, our JSON with the model named, and /predict naming none (the
        # default model: the rollout moves it too); one more /predict/batch, so that batches straddle the switch.
        clients = clients_of(svc.url, name) + [Client(svc.url, None, "predict", 40),
                                               Client(svc.url, name, "batch", 80)]
        load = Load(clients).start()
        started = time.monotonic()
        time.sleep(2)
        pinned = [Client(svc.url, name, "triton", 9, version="1"), Client(svc.url, name, "triton", 9, version="3")]
        assert_pinned(pinned[0].call(0), "1", refs)

        # version 2 comes up beside version 1; the API moves the name to it
        v2_start = time.monotonic()
        v2_workers = start_workers(svc, 2, "v2", {"MODEL_VERSION": "2", "MODEL": str(model_b)})
        switched = wait_for(lambda: models_listed(svc)[name]["routed_version"] == "2", 120,
                            "the name to be routed to version 2", svc)
        assert models_listed(svc)[name]["versions"] == ["1", "2"]
        assert_pinned(pinned[0].call(1), "1", refs)  # version 1 still answers where pinned while it is live
        pinned_v2 = Client(svc.url, name, "triton", 9, version="2")
        assert_pinned(pinned_v2.call(0), "2", refs)

        # once version 1's queue is empty (twice in a row, 0.2 s apart: nothing routed to it is still on its way
        # in), its workers are stopped gracefully: each finishes the texts it holds
        wait_for(lambda: stays_empty(client, v1_queue), 30, "version 1's queue to be empty", svc)
        drained = time.monotonic()
        codes = stop_all(v1_workers)
        v1_stopped = time.monotonic()
        for worker in v1_workers:
            svc.workers.remove(worker)
        assert codes == [0, 0], (codes, svc.dump_logs())
        time.sleep(2)  # more load on version 2 alone
        ended = time.monotonic()
        calls = load.stop()

        # pinned: version 1 known but down (503 with Retry-After once the API sees its workers gone), 3 never served
        wait_for(lambda: httpx.get(f"{svc.url}/v2/models/{name}/versions/1/ready", timeout=10).status_code == 503,
                 10, "version 1 to be seen down", svc)
        r = infer_raw(svc, f"/v2/models/{name}/versions/1/infer", ["good"])
        assert r.status_code == 503 and r.headers.get("retry-after") == "1", r.text
        call = pinned[0].call(2)
        assert call.status == 503, call.describe()
        r = infer_raw(svc, f"/v2/models/{name}/versions/3/infer", ["good"])
        assert r.status_code == 404 and "no version 3" in r.json()["error"], r.text
        call = pinned[1].call(0)
        assert call.status == 404, call.describe()
        for c in (*pinned, pinned_v2):
            c.close()
        listed = models_listed(svc)[name]
        assert listed["versions"] == ["1", "2"] and listed["routed_version"] == "2" and listed["ready"]

        # every request answered, all its texts by one version; after the switch, by version 2 only
        failed = [c.describe() for c in calls if c.status != 200]
        versions = {id(c): answered_by(refs, c.texts, c.answers) for c in calls if c.status == 200}
        mixed = [(c.describe(), c.answers) for c in calls if c.status == 200 and len(versions[id(c)]) != 1]
        wrong = [c.describe() for c in calls if c.status == 200 and versions[id(c)] == {"?"}]
        by_version = Counter(next(iter(versions[id(c)])) for c in calls if c.status == 200)
        multi = [c for c in calls if len(c.texts) > 1]
        straddling = [c for c in multi if c.started < switched <= c.ended]
        late_v1 = [c.describe() for c in calls if c.started >= switched and versions.get(id(c)) != {"2"}]
        report("rollout", seconds=round(ended - started, 1), requests=len(calls), failed=len(failed),
               mixed=len(mixed), by_version=dict(by_version), by_route=dict(Counter(c.via for c in calls)),
               multi_text_requests=len(multi), straddling_the_switch=len(straddling),
               v2_routed_after_s=round(switched - v2_start, 2), v1_drained_after_s=round(drained - switched, 2),
               v1_stop_s=round(v1_stopped - drained, 2))
        report("rollout latency", before_v2=latency([c for c in calls if c.ended < v2_start]),
               during=latency([c for c in calls if v2_start <= c.started and c.ended < v1_stopped]),
               after_v1_stopped=latency([c for c in calls if c.started >= v1_stopped]))
        assert not failed, failed[:10]
        assert not mixed, mixed[:5]
        assert not wrong, wrong[:5]
        assert not late_v1, late_v1[:5]
        for call in calls:
            if call.via == "triton":
                assert {call.version} == versions[id(call)], call.describe()  # model_version names who answered
        assert by_version["1"] >= 10 and by_version["2"] >= 10, by_version
        assert len([c for c in calls if c.started >= v1_stopped]) >= 5
        assert all(w.alive() for w in v2_workers)
    finally:
        if load is not None:
            load.halt()
        svc.stop()


def assert_pinned(call: Call, version: str, refs: Mapping[str, Mapping[str, Prediction]]) -> None:
    assert call.status == 200 and call.version == version, call.describe()
    assert answered_by(refs, call.texts, call.answers) == {version}, call.describe()


# --- two models, one frozen ---------------------------------------------------------------------------------------

def test_one_models_workers_frozen_under_load_leave_the_other_unaffected(redis_server, tiny_model, model_b,
                                                                          references, tmp_path):
    """beta's only worker is frozen (SIGSTOP: a hung process, a node out of CPU) for 6 s while both models are under
    load, then resumed: alpha answers everything, at the latency it had; a new request for beta gets a fast 503 once
    its worker counts as down (its heartbeat expired or its lease ran out) while beta's clients wait on what the
    worker holds, and beta answers again once it is resumed."""
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=0, SERVED_MODEL_NAME="alpha")
    start_workers(svc, 1, "alpha", {})
    [b_worker] = start_workers(svc, 1, "beta", {"SERVED_MODEL_NAME": "beta", "MODEL": str(model_b)})
    svc.wait_ready(2)
    refs = {"alpha": references["A"], "beta": references["B"]}
    load = Load(clients_of(svc.url, "alpha") + clients_of(svc.url, "beta", offset=60)).start()
    try:
        time.sleep(3)
        frozen = time.monotonic()
        b_worker.signal(signal.SIGSTOP)
        down = wait_for(lambda: not models_listed(svc)["beta"]["ready"], 10, "beta seen stalled", svc)
        # beta's own clients all wait on what the frozen worker holds; a new request is refused at once.
        probe_started = time.monotonic()
        probe = httpx.post(f"{svc.url}/predict", json={"text": "fine", "model": "beta"}, timeout=REQUEST_TIMEOUT_S + 5)
        probe_s = time.monotonic() - probe_started
        time.sleep(max(0.0, frozen + 6 - time.monotonic()))
        resumed = time.monotonic()
        b_worker.signal(signal.SIGCONT)
        back = wait_for(lambda: models_listed(svc)["beta"]["ready"], 15, "beta live again", svc)
        time.sleep(2)
    finally:
        b_worker.signal(signal.SIGCONT)
        calls = load.stop()
        svc.stop()
    alpha = [c for c in calls if c.model == "alpha"]
    beta = [c for c in calls if c.model == "beta"]
    a_before, a_frozen = [c for c in alpha if c.ended < frozen], [c for c in alpha if frozen <= c.started < resumed]
    report("frozen_model", alpha_calls=len(alpha), beta_calls=len(beta), beta_seen_down_after_s=round(down - frozen, 2),
           beta_back_after_s=round(back - resumed, 2), alpha_before=latency(a_before), alpha_frozen=latency(a_frozen),
           beta_statuses=dict(Counter(c.status for c in beta)), beta_probe=(probe.status_code, round(probe_s, 3)))
    failed = [c for c in alpha if c.status != 200]
    assert not failed, [c.describe() for c in failed[:10]]
    for call in alpha:
        assert answered_by(refs, call.texts, call.answers) == {"alpha"}, call.describe()
    assert len(a_before) >= 20 and len(a_frozen) >= 20, (len(a_before), len(a_frozen))
    assert latency(a_frozen)["p50_ms"] <= 2 * latency(a_before)["p50_ms"] + 50, (latency(a_before),
                                                                                   latency(a_frozen))
    for call in beta:  # answered, a fast 503 while stalled, or 504 for what the frozen worker held
        assert call.status in (200, 503, 504), call.describe()
        if call.status == 200:
            assert answered_by(refs, call.texts, call.answers) == {"beta"}, call.describe()
    assert probe.status_code == 503 and probe.headers.get("retry-after") == "1" and probe_s < 2, (probe.text, probe_s)
    assert any(c.status == 200 for c in beta if c.started > back), "beta answers again once resumed"
