"""Clients for the systems of one SoftwareDeliveryPlatform, built at the moment of use.

A handler names an SDP; this module reads the SDP's credential Secrets (through a short
per-process cache, never through Redis or task arguments), and hands out the process's cached
client per SDP and system, so a worker logs in once per token lifetime, not once per reconcile.
Every client of an SDP shares one Redis rate limiter per system, so all worker pods together
stay under the SDP's `settings.rateLimit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from polycrate.errors import DependencyNotFoundError, InvalidSpecError
from polycrate.keys import ObjectKey
from polycrate.models import parse_spec
from polycrate.models.platform import SoftwareDeliveryPlatformSpec
from polycrate.ratelimit import RateLimiter
from polycrate.secrets import SecretReader
from tasks.context import WorkerContext
from workers import argocd, gitlab, harbor, keycloak


@dataclass
class PlatformConnections:
    """Lazily built clients for the systems an SDP configures (None when it does not)."""

    ctx: WorkerContext
    namespace: str
    name: str
    spec: SoftwareDeliveryPlatformSpec

    @property
    def scope(self) -> str:
        return f"{self.namespace}/{self.name}"

    @cached_property
    def _secrets(self) -> SecretReader:
        return self.ctx.secrets

    def _secret(self, secret_name: str, key: str) -> str:
        return self._secrets.get(self.namespace, secret_name, key)

    def _limiter(self, system: str) -> RateLimiter:
        limit = self.spec.settings.effective_rate_limit()
        return RateLimiter(
            self.ctx.redis, system=system, scope=self.scope, rate=limit.requestsPerSecond, burst=limit.burst
        )

    def keycloak(self) -> keycloak.KeycloakClient | None:
        conf = self.spec.keycloak
        if conf is None:
            return None
        ref = conf.credentialsRef
        credentials = keycloak.KeycloakCredentials(
            self._secret(ref.secretName, ref.clientIdKey), self._secret(ref.secretName, ref.clientSecretKey)
        )
        return keycloak.get_client(
            self.scope,
            str(conf.url),
            conf.realm,
            credentials,
            token_realm=conf.authRealm,
            limiter=self._limiter("keycloak"),
        )

    def gitlab(self) -> gitlab.GitLabClient | None:
        conf = self.spec.gitlab
        if conf is None:
            return None
        ref = conf.credentialsRef
        return gitlab.get_client(
            self.scope,
            str(conf.url),
            self._secret(ref.secretName, ref.tokenKey),
            limiter=self._limiter("gitlab"),
        )

    def harbor(self) -> harbor.HarborClient | None:
        conf = self.spec.harbor
        if conf is None:
            return None
        ref = conf.credentialsRef
        return harbor.get_client(
            self.scope,
            str(conf.url),
            self._secret(ref.secretName, ref.usernameKey),
            self._secret(ref.secretName, ref.passwordKey),
            limiter=self._limiter("harbor"),
        )

    def argocd(self) -> argocd.ArgoCDClient | None:
        conf = self.spec.argocd
        if conf is None:
            return None
        ref = conf.credentialsRef
        return argocd.get_client(
            self.scope,
            str(conf.url),
            self._secret(ref.secretName, ref.tokenKey),
            limiter=self._limiter("argocd"),
        )


def platform(ctx: WorkerContext, namespace: str, name: str, *, referrer: str) -> PlatformConnections:
    """Connections of the SDP `namespace/name`, read fresh from the cluster.

    `referrer` names the object that refers to the SDP (e.g. 'Organization polycrate/acme-corp:
    spec.sdp'), so a missing or invalid SDP is reported where the user has to look.
    """
    obj = ctx.objects.get(ObjectKey("SoftwareDeliveryPlatform", namespace, name))
    if obj is None:
        raise DependencyNotFoundError(
            f'{referrer}: SoftwareDeliveryPlatform "{name}" not found in namespace {namespace}'
        )
    try:
        spec = parse_spec(obj)
    except InvalidSpecError as exc:
        raise DependencyNotFoundError(f"{referrer}: the referenced platform is invalid: {exc}") from None
    assert isinstance(spec, SoftwareDeliveryPlatformSpec)
    return PlatformConnections(ctx, namespace, name, spec)
