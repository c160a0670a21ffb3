"""The per-process client cache: reuse per owner, replacement on rotated credentials."""

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
