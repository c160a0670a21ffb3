"""KeyLock against a real redis-server: exclusion, renewal, owner-only release, expiry."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import redis

from polycrate.fence import FencedError
from polycrate.keys import ObjectKey
from tasks.locking import KeyLock, lock_key
from tests.fixtures.redis import RedisServer
from tests.watcher.stalling_proxy import StallingProxy

ACME = ObjectKey("Organization", "polycrate", "acme-corp")


def test_only_one_holder_at_a_time(redis_client: redis.Redis) -> None:
    first = KeyLock(redis_client, ACME, ttl=5)
    second = KeyLock(redis_client, ACME, ttl=5)

    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_different_keys_lock_independently(redis_client: redis.Redis) -> None:
    acme = KeyLock(redis_client, ACME, ttl=5)
    other = KeyLock(redis_client, ObjectKey("Organization", "polycrate", "globex"), ttl=5)

    assert acme.acquire() and other.acquire()
    acme.release()
    other.release()


def test_renewal_keeps_the_lock_past_its_ttl(redis_client: redis.Redis) -> None:
    holder = KeyLock(redis_client, ACME, ttl=0.3)
    assert holder.acquire()

    time.sleep(1.0)  # more than three TTLs

    assert not KeyLock(redis_client, ACME, ttl=0.3).acquire()
    assert holder.held and not holder.lost
    assert holder.release()


def test_the_locks_of_one_process_are_renewed_together_each_by_its_own_token(
    redis_client: redis.Redis,
) -> None:
    holders = [
        KeyLock(redis_client, ObjectKey("Organization", "polycrate", f"org-{n}"), ttl=0.3) for n in range(8)
    ]
    assert all(holder.acquire() for holder in holders)
    taken_over = holders[3]
    redis_client.set(taken_over.name, "another-worker's-token", px=5000)
    before = _evalsha_calls(redis_client)

    time.sleep(1.0)  # more than three TTLs

    assert [holder.held for holder in holders] == [n != 3 for n in range(8)]
    assert taken_over.lost and redis_client.get(taken_over.name) == b"another-worker's-token"
    assert [t.name for t in threading.enumerate()].count("lock-renewal") == 1
    rounds = _evalsha_calls(redis_client) - before
    assert 3 <= rounds <= 25, f"one round trip per round for all locks, not one per lock ({rounds})"
    assert all(holder.release() for n, holder in enumerate(holders) if n != 3)


def _evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_owner_token_guards_release_so_an_expired_owner_cannot_free_the_new_holders_lock(
    redis_client: redis.Redis,
) -> None:
    old = KeyLock(redis_client, ACME, ttl=0.3)
    assert old.acquire()
    redis_client.delete(lock_key("polycrate", ACME))  # as if a long GC pause let it expire
    new = KeyLock(redis_client, ACME, ttl=5)
    assert new.acquire()

    deadline = time.monotonic() + 2
    while not old.lost and time.monotonic() < deadline:
        time.sleep(0.02)

    assert old.lost, "the renewal noticed it no longer owns the lock"
    assert old.release() is False
    assert redis_client.get(lock_key("polycrate", ACME)) == new.token.encode()
    new.release()


def test_lock_of_a_killed_worker_expires_and_frees_the_key(redis_url: str, redis_client: redis.Redis) -> None:
    holder_script = (
        "import sys, time, redis\n"
        "from polycrate.keys import ObjectKey\n"
        "from tasks.locking import KeyLock\n"
        f"lock = KeyLock(redis.Redis.from_url({redis_url!r}), ObjectKey.parse({str(ACME)!r}), ttl=0.5)\n"
        "assert lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", holder_script], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "held"
        time.sleep(0.8)  # renewals keep it alive while the process lives
        assert not KeyLock(redis_client, ACME, ttl=5).acquire()

        worker.kill()
        worker.wait()

        successor = KeyLock(redis_client, ACME, ttl=5)
        deadline = time.monotonic() + 2
        while not successor.acquire():
            assert time.monotonic() < deadline, "the dead worker's lock never expired"
            time.sleep(0.05)
        successor.release()
    finally:
        worker.kill()
        worker.wait()


def test_fence_allows_writes_while_the_lock_is_renewed(redis_client: redis.Redis) -> None:
    holder = KeyLock(redis_client, ACME, ttl=0.6)
    assert holder.acquire()
    time.sleep(1.0)

    holder.check()  # renewed every 0.2 s, so still ours: no exception
    holder.release()


def test_fence_closes_once_the_lock_was_taken_over(redis_client: redis.Redis) -> None:
    holder = KeyLock(redis_client, ACME, ttl=0.6)
    assert holder.acquire()
    redis_client.set(lock_key("polycrate", ACME), "another-worker")
    time.sleep(0.5)

    with pytest.raises(FencedError, match="lock lost"):
        holder.check()
    holder.release()


def test_fence_closes_before_the_lock_expires_when_redis_stops_answering(
    redis_server: RedisServer, redis_url: str
) -> None:
    proxy = StallingProxy(redis_server.port).start()
    direct = redis_server.client()
    through_proxy = redis.Redis(
        host="127.0.0.1", port=proxy.port, socket_timeout=0.3, socket_connect_timeout=0.3
    )
    holder = KeyLock(through_proxy, ACME, ttl=3)
    try:
        assert holder.acquire()
        proxy.stall()  # the holder's link goes silent; Redis itself is fine

        closed_at = None
        while closed_at is None:
            try:
                holder.check()
            except FencedError:
                closed_at = time.monotonic()
            time.sleep(0.05)

        assert direct.pttl(lock_key("polycrate", ACME)) > 500, (
            "the run stopped writing while the lock still held, before anyone else could take the key"
        )
    finally:
        proxy.stop()
        direct.delete(lock_key("polycrate", ACME))
        direct.close()
