"""Who is calling and what they may do: bearer tokens and the RBAC authorizer of kube-apiserver.

Authentication knows two kinds of bearer token: the emulator's admin token (user
`kubernetes-admin` in group `system:masters`, which skips authorization as on a real cluster;
the kubeconfig `write_kubeconfig` writes carries it) and ServiceAccount tokens issued by the
TokenRequest subresource (`POST .../serviceaccounts/<name>/token`, what `kubectl create token`
calls); such a token is bound to the ServiceAccount's uid and stops working when it is deleted.
Tokens do not expire here. A request without a token is the admin too unless the emulator was
built with `anonymous_admin=False` (then `system:anonymous`), so raw-HTTP tests keep working.

Authorization evaluates the stored Role, ClusterRole, RoleBinding and ClusterRoleBinding
objects with rbac/v1's matching rules: verbs and apiGroups with `*`, resources as `plural`,
`plural/subresource`, `*/subresource` or `*`, resourceNames, nonResourceURLs; a ClusterRole
bound by a RoleBinding grants only in that namespace. Every authenticated user may GET the
discovery and version paths and create SelfSubjectAccessReviews (what the default
`system:discovery`, `system:public-info-viewer` and `system:basic-user` bindings grant); access
reviews are answered with the same evaluation. A denial is the real 403 `Forbidden` Status.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emulators.kubernetes.status import ApiError

RBAC_GROUP = "rbac.authorization.k8s.io"
ADMIN_USER = "kubernetes-admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
# Paths anyone may GET (system:public-info-viewer), and every authenticated user (system:discovery).
PUBLIC_INFO_PATHS = ("/healthz", "/livez", "/readyz", "/version")
DISCOVERY_PATHS = ("/api", "/apis", "/openapi")


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return MASTERS in self.groups


ADMIN = UserInfo(ADMIN_USER, (MASTERS, AUTHENTICATED))
ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


def service_account_user(namespace: str, name: str) -> UserInfo:
    return UserInfo(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


@dataclass(frozen=True)
class RequestAttributes:
    """What a request asks for, as kube-apiserver's RequestInfo describes it."""

    verb: str
    path: str
    resource_request: bool = True
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: UserInfo, attributes: RequestAttributes) -> ApiError:
    """The 403 the RBAC authorizer's denial becomes, worded as kube-apiserver words it."""
    if not attributes.resource_request:
        return ApiError(
            403,
            "Forbidden",
            f'forbidden: User "{user.name}" cannot {attributes.verb} path "{attributes.path}"',
        )
    resource = attributes.resource
    if attributes.subresource:
        resource += f"/{attributes.subresource}"
    reason = (
        f'User "{user.name}" cannot {attributes.verb} resource "{resource}" in API group "{attributes.group}"'
    )
    reason += (
        f' in the namespace "{attributes.namespace}"' if attributes.namespace else " at the cluster scope"
    )
    qualified = f"{attributes.resource}.{attributes.group}" if attributes.group else attributes.resource
    message = (
        f'{qualified} "{attributes.name}" is forbidden: {reason}'
        if attributes.name
        else f"{qualified} is forbidden: {reason}"
    )
    details: dict[str, Any] = {"group": attributes.group, "kind": attributes.resource}
    if attributes.name:
        details = {"name": attributes.name, **details}
    return ApiError(403, "Forbidden", message, details)


# --- rule matching (k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go) --------------------


def _verb_matches(rule: dict[str, Any], verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _group_matches(rule: dict[str, Any], group: str) -> bool:
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def _resource_matches(rule: dict[str, Any], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for candidate in rule.get("resources") or []:
        if candidate in ("*", combined):
            return True
        if subresource and candidate == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: dict[str, Any], name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def _non_resource_matches(rule: dict[str, Any], path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(rule: dict[str, Any], attributes: RequestAttributes) -> bool:
    if not _verb_matches(rule, attributes.verb):
        return False
    if not attributes.resource_request:
        return _non_resource_matches(rule, attributes.path)
    return (
        _group_matches(rule, attributes.group)
        and _resource_matches(rule, attributes.resource, attributes.subresource)
        and _name_matches(rule, attributes.name)
    )


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return path in ("", "/") or any(path == p or path.startswith(p + "/") for p in prefixes)


def _subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


class AccessControl:
    """Tokens and RBAC over the objects of an emulated cluster's store."""

    def __init__(self, store: Any, *, anonymous_admin: bool = True) -> None:
        self.store = store
        self.anonymous_admin = anonymous_admin
        self.admin_token = secrets.token_urlsafe(24)
        self._tokens: dict[str, tuple[str, str, str]] = {}  # token -> (namespace, name, uid)
        self._lock = threading.Lock()
        # The messages of the latest 403s, so a test can assert that nobody was denied anything.
        self.denials: deque[str] = deque(maxlen=1000)

    def reset(self) -> None:
        """Forget issued tokens and recorded denials (the admin token stays)."""
        with self._lock:
            self._tokens.clear()
        self.denials.clear()

    # --- authentication ------------------------------------------------------------------------

    def issue_token(self, service_account: dict[str, Any]) -> str:
        metadata = service_account["metadata"]
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (metadata["namespace"], metadata["name"], metadata["uid"])
        return token

    def authenticate(self, authorization: str | None) -> UserInfo:
        if not authorization:
            return ADMIN if self.anonymous_admin else ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if secrets.compare_digest(token, self.admin_token):
            return ADMIN
        with self._lock:
            bound = self._tokens.get(token)
        if bound is None:
            raise unauthorized()
        namespace, name, uid = bound
        with self.store.lock:
            account = self.store.get(("", "serviceaccounts"), namespace, name)
        if account is None or account["metadata"].get("uid") != uid:
            raise unauthorized()
        return service_account_user(namespace, name)

    # --- authorization -------------------------------------------------------------------------

    def _role_rules(self, kind: str, name: str, namespace: str) -> list[dict[str, Any]]:
        if kind == "ClusterRole":
            role = self.store.get((RBAC_GROUP, "clusterroles"), "", name)
        elif kind == "Role":
            role = self.store.get((RBAC_GROUP, "roles"), namespace, name)
        else:
            role = None
        return list((role or {}).get("rules") or [])

    def rules_for(self, user: UserInfo, namespace: str) -> Iterable[dict[str, Any]]:
        """The rules that apply to `user` for a request in `namespace` ("" = cluster scope)."""
        with self.store.lock:
            rules: list[dict[str, Any]] = []
            for binding in self.store.list((RBAC_GROUP, "clusterrolebindings")):
                if any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
                    ref = binding.get("roleRef") or {}
                    rules += self._role_rules(str(ref.get("kind")), str(ref.get("name")), "")
            if namespace:
                for binding in self.store.list((RBAC_GROUP, "rolebindings"), namespace):
                    if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                        ref = binding.get("roleRef") or {}
                        rules += self._role_rules(str(ref.get("kind")), str(ref.get("name")), namespace)
            return rules

    def allowed(self, user: UserInfo, attributes: RequestAttributes) -> bool:
        if user.is_admin:
            return True
        public = _under(attributes.path, PUBLIC_INFO_PATHS) or (
            AUTHENTICATED in user.groups and _under(attributes.path, DISCOVERY_PATHS)
        )
        if not attributes.resource_request and attributes.verb == "get" and public:
            return True
        if (
            AUTHENTICATED in user.groups
            and attributes.verb == "create"
            and attributes.group == "authorization.k8s.io"
            and attributes.resource == "selfsubjectaccessreviews"
        ):
            return True  # system:basic-user: everyone may ask what they may do
        return any(rule_allows(rule, attributes) for rule in self.rules_for(user, attributes.namespace))

    def authorize(self, user: UserInfo, attributes: RequestAttributes) -> None:
        if not self.allowed(user, attributes):
            denial = forbidden(user, attributes)
            self.denials.append(denial.message)
            raise denial
