"""The process's client of one system per owner: one lookup shared by every system module.

Each system module (keycloak, gitlab, harbor, argocd, polycrate_api) builds its own client; how
that client is found again is the same for all: credentials that are empty are refused before
any request (a message naming the system and URL, never the value), and the cache key is the
URL, a digest of the credentials (never the credentials), the HTTP policy and whatever else
picks the connection (a Keycloak realm), so rotated credentials or a changed URL get a fresh
client while a steady owner reuses its login and connections (workers.clients.ClientCache).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from polycrate.errors import PermanentError
from polycrate.httppolicy import HttpPolicy
from polycrate.ratelimit import RateLimiter
from workers.clients import ClientCache, credentials_digest

ClientT = TypeVar("ClientT")


class OwnerClients(Generic[ClientT]):
    """The clients of `system` in this process, one per owner (an SDP or the OperatorConfig).

    `create(url, *secrets, policy=..., limiter=...)` builds a client (usually the client class);
    `empty` names the credentials in the error for an empty one ("the SDP's token")."""

    def __init__(self, system: str, create: Callable[..., ClientT], *, empty: str = "") -> None:
        self.system = system
        self._create = create
        self._empty = empty
        self._cache: ClientCache[ClientT] = ClientCache()

    def get(
        self,
        owner: str,
        url: str,
        *secrets: str,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> ClientT:
        """The owner's client for `url` and `secrets` (e.g. a token), built on first use.

        The key holds the owner, URL, policy and a digest of the secrets (in memory only): a
        rotated secret or a changed URL gets a fresh client, and the owner's old one is closed."""
        return self.lookup(
            owner,
            url,
            lambda: self._create(url, *secrets, policy=policy, limiter=limiter),
            secrets=secrets,
            policy=policy,
        )

    def lookup(
        self,
        owner: str,
        url: str,
        create: Callable[[], ClientT],
        *,
        secrets: Sequence[str] = (),
        policy: HttpPolicy | None = None,
        selects: Hashable = (),
    ) -> ClientT:
        """`get` for a client built otherwise (`create`); `selects` is what else picks the
        connection besides URL and secrets (a Keycloak realm)."""
        if self._empty and not all(secrets):
            raise PermanentError(
                f"{self.system} ({url}): {self._empty} is empty", reason="InvalidCredentials"
            )
        connection = (url.rstrip("/"), credentials_digest(*secrets), policy, selects)
        return self._cache.get(owner, connection, create)

    def clear(self) -> None:
        """Forget (and close) every client: tests, never needed by a worker."""
        self._cache.clear()
