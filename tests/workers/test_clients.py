"""The per-process client cache: reuse per owner, replacement on rotated credentials, and one
SDP's clients shared safely by a worker's threads (real emulators over HTTP)."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from workers import argocd as argocd_worker
from workers import gitlab as gitlab_worker
from workers import harbor as harbor_worker
from workers import keycloak as keycloak_worker
from workers.clients import ClientCache, credentials_digest


class _Client:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_same_owner_and_connection_reuses_the_client():
    cache: ClientCache[_Client] = ClientCache()
    first = cache.get("polycrate/production", ("https://gitlab", "d1"), lambda: _Client("a"))
    again = cache.get("polycrate/production", ("https://gitlab", "d1"), lambda: _Client("b"))
    assert again is first


def test_rotated_credentials_replace_and_close_the_owners_old_client():
    cache: ClientCache[_Client] = ClientCache()
    old = cache.get("polycrate/production", ("https://gitlab", "d1"), lambda: _Client("old"))
    new = cache.get("polycrate/production", ("https://gitlab", "d2"), lambda: _Client("new"))
    assert (new.name, old.closed) == ("new", True)


def test_owners_do_not_share_clients():
    cache: ClientCache[_Client] = ClientCache()
    a = cache.get("polycrate/production", ("https://gitlab", "d1"), lambda: _Client("a"))
    b = cache.get("polycrate/staging", ("https://gitlab", "d1"), lambda: _Client("b"))
    assert a is not b and not a.closed


def test_digest_tells_credentials_apart_without_containing_them():
    digest = credentials_digest("admin", "s3cret")
    assert digest != credentials_digest("admin", "other")
    assert "s3cret" not in digest


# -- one SDP's clients shared by a worker's threads --------------------------------------------

THREADS = 32
SDP = "polycrate/threaded"


@pytest.fixture
def sdp_systems(keycloak_emulator, gitlab_emulator, harbor, argocd):
    """The four systems of one SDP, each answering after 20 ms so the threads' calls overlap."""
    for module in (keycloak_worker, gitlab_worker, harbor_worker, argocd_worker):
        module.clear_clients()
    for emulator in (keycloak_emulator, gitlab_emulator, harbor, argocd):
        emulator.set_faults(latency_ms=20)
    yield keycloak_emulator, gitlab_emulator, harbor, argocd
    for module in (keycloak_worker, gitlab_worker, harbor_worker, argocd_worker):
        module.clear_clients()


def test_32_threads_reconcile_tenants_through_one_sdps_clients_without_errors_or_duplicates(
    sdp_systems, caplog
):
    keycloak, gitlab, harbor, argocd = sdp_systems
    start = threading.Barrier(THREADS)

    def clients() -> tuple[object, ...]:
        """What each thread's reconcile asks for: the process's clients of the SDP."""
        credentials = keycloak_worker.KeycloakCredentials(keycloak.client_id, keycloak.client_secret)
        return (
            keycloak_worker.get_client(SDP, keycloak.url, keycloak.realm, credentials),
            gitlab_worker.get_client(SDP, gitlab.url, gitlab.admin_token),
            harbor_worker.get_client(SDP, harbor.url, harbor.admin_username, harbor.admin_password),
            argocd_worker.get_client(SDP, argocd.url, argocd.token),
        )

    def reconcile(index: int) -> tuple[tuple[object, ...], list[str]]:
        start.wait()
        kc, gl, hb, ac = used = clients()
        name = f"tenant-{index:02d}"
        steps = lambda: [  # noqa: E731 - the same steps twice: create, then converge
            kc.ensure_group(name),
            kc.ensure_subgroup(name, "admins"),
            gl.ensure_group(name),
            hb.ensure_project(name, storage_quota="1Gi"),
            ac.ensure_project(name, description=name),
        ]
        return used, [change.action for change in steps() + steps()]

    with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(reconcile, range(THREADS)))

    # Each system's client was built once for the SDP and shared by every thread.
    assert [len({id(used[system]) for used, _ in results}) for system in range(4)] == [1, 1, 1, 1]
    assert all(actions == ["created"] * 5 + ["unchanged"] * 5 for _, actions in results)
    # One login for all threads (the token is shared), and every object exists exactly once.
    assert results[0][0][0].login_count == 1
    tenants = sorted(f"tenant-{index:02d}" for index in range(THREADS))
    groups = keycloak.snapshot()["realms"][keycloak.realm]["groups"]
    assert sorted(g["path"] for g in groups if g["path"].count("/") == 1) == [f"/{t}" for t in tenants]
    assert len([g for g in groups if g["path"].endswith("/admins")]) == THREADS
    assert sorted(g["full_path"] for g in gitlab.snapshot()["groups"]) == tenants
    assert sorted(p["name"] for p in harbor.snapshot()["projects"] if p["name"] != "library") == tenants
    assert sorted(set(argocd.snapshot()["projects"]) - {"default"}) == tenants
    # Pools hold a connection per thread: none was discarded and reopened.
    assert not [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]
