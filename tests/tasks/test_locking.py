"""KeyLock against a real redis-server: exclusion, renewal, owner-only release, expiry."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from tasks.keys import ObjectKey
from tasks.locking import KeyLock, lock_key

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
        "from tasks.keys import ObjectKey\n"
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
