"""The reaper's verdicts against a real Redis and real connections: a worker is gone when no connection of its
incarnation is left, stalled when it holds work past its lease."""

import logging

import redis

from common.scripts import RecoveryMode, digest
from tests.helpers import wait_until
from tests.integration.work import messages, pop, recovery
from tests.integration.work import worker_queue as queue
from worker.heartbeat import Heartbeat
from worker.window import Outbox


def test_a_gone_workers_messages_go_back_to_the_head_in_order(env):
    client, keys = env
    held, _ = messages(["1", "2", "3"])
    waiting, _ = messages(["later"])
    client.rpush(keys.requests, *held, *waiting)
    assert pop(queue(client, keys, "dead-1"), 3) == held  # registered by its pop; no connection of its name
    Heartbeat(client, keys, "dead-1", "dead-1-i", interval_s=60, ttl_s=30, describe=dict).beat()  # still beating
    reaped = recovery(client, keys).reap(lock_ttl_s=5)
    assert reaped == {"dead-1": (3, 0)}
    assert client.lrange(keys.requests, 0, -1) == held + waiting
    assert client.exists(keys.inflight("dead-1"), keys.heartbeat("dead-1")) == 0  # withdrawn: /readyz at once
    assert client.hexists(keys.workers, "dead-1") == 0
    assert all(int(client.hget(keys.deaths, digest(m))) == 1 for m in held)
    assert 0 < client.ttl(keys.deaths) <= 7200  # death counts cannot outlive the longest deadline by much


def test_connected_workers_within_their_lease_are_not_reaped_and_one_reaper_at_a_time(env, connect, caplog):
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    connect(keys, "alive")
    pop(queue(client, keys, "alive"), 1, lease_s=30)
    assert recovery(client, keys).reap(lock_ttl_s=5) == {}
    assert client.lrange(keys.inflight("alive"), 0, -1) == held
    client.set(keys.reaper_lock, "someone-else", px=5000)
    client.delete(keys.lease("alive"))
    assert recovery(client, keys).reap(lock_ttl_s=5) == {}  # lock held elsewhere
    client.delete(keys.reaper_lock)
    with caplog.at_level(logging.WARNING, logger="worker.recovery"):
        assert recovery(client, keys).reap(lock_ttl_s=5) == {"alive": (1, 0)}
    assert client.exists(keys.reaper_lock) == 0  # released
    assert caplog.messages == ["worker alive stalled holding 1 message(s) past its lease: 1 re-queued, "
                               "0 dead-lettered"]
    assert client.hget(keys.workers, "alive") == b"alive-i"  # stalled, not gone: it stays registered
    assert int(client.hget(keys.deaths, digest(held[0]))) == 1  # a hang is a strike against its message


def test_a_stalled_worker_that_renews_its_lease_in_time_keeps_its_window(env, connect):
    client, keys = env
    held, _ = messages(["x", "y"])
    client.rpush(keys.requests, *held)
    connect(keys, "slow")
    q = queue(client, keys, "slow")
    pop(q, 2, lease_s=0.05)
    wait_until(lambda: not client.exists(keys.lease("slow")), 2, "the lease to run out")
    # The reaper read the state, then the worker published (its lease is back) before the recovery ran.
    q.publish(Outbox(done=held[:1], lease_s=30))
    assert recovery(client, keys).recover("slow", RecoveryMode.STALLED, "slow-i") == (0, 0)
    assert client.lrange(keys.inflight("slow"), 0, -1) == held[1:]


def test_a_worker_is_gone_when_its_incarnation_has_no_connection_even_if_another_one_of_its_id_has(env, connect):
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "box"), 1)  # incarnation box-i holds work
    connect(keys, "box", "an-old-incarnation")  # a leftover connection of another incarnation proves nothing
    assert recovery(client, keys).reap(lock_ttl_s=5) == {"box": (1, 0)}


def test_recovery_for_an_incarnation_leaves_a_newer_one_alone(env):
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "box"), 1)
    client.hset(keys.workers, "box", "newer")  # restarted under the same id (it recovered the old window itself)
    assert recovery(client, keys).recover("box", RecoveryMode.DIED, "box-i") == (0, 0)
    assert recovery(client, keys).release("box", "box-i") == 0
    assert client.hget(keys.workers, "box") == b"newer" and client.llen(keys.inflight("box")) == 1


def test_registered_elsewhere_names_a_live_other_incarnation_only(env, connect):
    client, keys = env
    reaper = recovery(client, keys)
    assert reaper.registered_elsewhere("box", "mine") is None  # nobody
    client.hset(keys.workers, "box", "theirs")
    assert reaper.registered_elsewhere("box", "mine") is None  # registered, but its process is gone
    connect(keys, "box", "theirs")
    assert reaper.registered_elsewhere("box", "mine") == "theirs"
    assert reaper.registered_elsewhere("box", "theirs") is None


def test_a_reaper_that_dies_mid_reap_holds_the_lock_only_for_its_ttl(env, monkeypatch):
    client, keys = env
    reaper = recovery(client, keys)
    monkeypatch.setattr(reaper._scripts, "release_lock", lambda key, token: 0)  # dies before releasing
    reaper.reap(lock_ttl_s=0.8)
    assert 0 < client.pttl(keys.reaper_lock) <= 800


def test_without_client_list_a_killed_workers_work_comes_back_by_its_lease(env, monkeypatch, caplog):
    """Some Redis deployments refuse CLIENT LIST (ACLs, managed services): said once, loudly, and the lease still
    brings a dead worker's work back; a worker is gone when its heartbeat expired."""
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "killed"), 1, lease_s=30)
    Heartbeat(client, keys, "killed", "killed-i", interval_s=60, ttl_s=30, describe=dict).beat()
    reaper = recovery(client, keys)

    def refused(**_kwargs):
        raise redis.ResponseError("NOPERM this user has no permissions to run the 'client|list' command")

    monkeypatch.setattr(reaper._redis, "client_list", refused)
    with caplog.at_level(logging.ERROR, logger="worker.recovery"):
        assert reaper.reap(lock_ttl_s=5) == {}  # beating, within its lease: nothing to do yet
        client.delete(keys.lease("killed"))  # its lease runs out (nobody renews it)
        assert reaper.reap(lock_ttl_s=5) == {"killed": (1, 0)}  # stalled: taken back
        client.delete(keys.heartbeat("killed"))  # and once its heartbeat expires it is forgotten
        assert reaper.reap(lock_ttl_s=5) == {"killed": (0, 0)} and not client.hexists(keys.workers, "killed")
    assert [r.message.split(" (")[0] for r in caplog.records] == ["Redis refuses CLIENT LIST"]


def test_without_client_list_another_incarnation_counts_as_alive_while_it_beats(env, monkeypatch):
    client, keys = env
    reaper = recovery(client, keys)

    def refused(**_kwargs):
        raise redis.ResponseError("NOPERM")

    monkeypatch.setattr(reaper._redis, "client_list", refused)
    client.hset(keys.workers, "box", "theirs")
    assert reaper.registered_elsewhere("box", "mine") is None  # no heartbeat: gone
    Heartbeat(client, keys, "box", "theirs", interval_s=60, ttl_s=30, describe=dict).beat()
    assert reaper.registered_elsewhere("box", "mine") == "theirs"


def test_the_reaper_acts_on_the_incarnation_it_judged_not_on_a_newer_one(env, monkeypatch):
    """Between reading the registry and recovering, the gone worker's id was taken by a new process (a container
    restarted under it, which recovered the old window itself): the reaper must leave the new one alone."""
    client, keys = env
    held, _ = messages(["x"])
    client.rpush(keys.requests, *held)
    pop(queue(client, keys, "box"), 1)  # registered as box-i, holding x; no connection of that name
    reaper = recovery(client, keys)
    stale = reaper._scripts.worker_states()  # the reaper's reading...
    client.hset(keys.workers, "box", "newer")  # ...then the new process registers
    monkeypatch.setattr(reaper._scripts, "worker_states", lambda: stale)
    assert reaper.reap(lock_ttl_s=5) == {"box": (0, 0)}
    assert client.hget(keys.workers, "box") == b"newer" and client.llen(keys.inflight("box")) == 1
