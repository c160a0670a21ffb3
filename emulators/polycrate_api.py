"""The Polycrate API, emulated as the Django REST framework service the operator talks to.

There is no public spec, so ours (`specs/polycrate-api.yaml`) is both the contract and the
source of the field list: every object is answered with all fields its schema declares, with
the schema's defaults (or null) for those never set, as a DRF ModelSerializer does. Lists are
paginated {count, next, previous, results} with absolute `next` links and 404 "Invalid page."
past the end; a duplicate natural key is a 400 with non_field_errors; a foreign key that does
not resolve is a 400 field error; deleting a cluster deletes what was discovered in it.
Authentication is `Authorization: Token <agent token>`; each token belongs to one workspace,
whose organization's workspaces and blocks it can read, and discovered objects are scoped to it.

Credentials and identity for clients (and the launcher's state file): `token`, `workspace_id`,
`workspace_name`, `organization_id`, `organization_name`.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from emulators.server import EmulatorServer, json_response

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Family:
    """One discovered-resource collection: its schema, natural key and list filters."""

    schema: str
    natural_key: tuple[str, ...]
    filters: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    "clusters": Family("Cluster", ("workspace", "name"), ("name", "workspace")),
    "endpoints": Family("Endpoint", ("cluster", "namespace", "name"), ("cluster", "namespace", "name")),
    "k8sapps": Family("K8sApp", ("cluster", "namespace", "name"), ("cluster", "namespace", "name", "block")),
    "hosts": Family("Host", ("cluster", "name"), ("cluster", "name")),
    "backups": Family("Backup", ("cluster", "namespace", "name"), ("cluster", "namespace", "name", "status")),
    "backup-schedules": Family(
        "BackupSchedule", ("cluster", "namespace", "name"), ("cluster", "namespace", "name")
    ),
    "certificates": Family(
        "Certificate",
        ("cluster", "namespace", "name"),
        ("cluster", "namespace", "name", "certificate_status"),
    ),
    "artifacts": Family("Artifact", ("cluster", "image"), ("cluster", "image")),
}
_UUID_FILTERS = {"cluster", "workspace", "block", "organization"}


class ApiError(Exception):
    """A DRF error answer: {"detail": ...} or field errors {"field": ["message"]}."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class PolycrateApiEmulator(EmulatorServer):
    """Polycrate API. Attributes for clients: `token`, `workspace_id`, `organization_id` and names."""

    system = "polycrate-api"
    contract_file = "polycrate-api.yaml"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        token: str | None = None,
        workspace_name: str = "production",
        organization_name: str = "acme-corp",
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.token = token or secrets.token_hex(20)
        self.workspace_name = workspace_name
        self.organization_name = organization_name
        self.workspace_id = str(uuid.uuid4())
        self.organization_id = str(uuid.uuid4())
        self.default_page_size = page_size
        super().__init__(host, port, latency_ms=latency_ms)

    # -- state ---------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.page_size = self.default_page_size
        self.organizations: dict[str, dict[str, Any]] = {
            self.organization_id: {
                "id": self.organization_id,
                "name": self.organization_name,
                "display_name": None,
            }
        }
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in FAMILIES}
        self.health_reports: list[dict[str, Any]] = []
        self.add_workspace(self.workspace_name, workspace_id=self.workspace_id)
        self.tokens[self.token] = self.workspace_id

    def snapshot(self) -> dict[str, Any]:
        return {
            "organizations": list(self.organizations.values()),
            "workspaces": list(self.workspaces.values()),
            "blocks": list(self.blocks.values()),
            **{name: list(items.values()) for name, items in self.objects.items()},
            "health_reports": list(self.health_reports),
        }

    def add_workspace(self, name: str, *, workspace_id: str | None = None) -> dict[str, Any]:
        """A further workspace of the organization (setting the stage for block-id resolution)."""
        workspace = {
            "id": workspace_id or str(uuid.uuid4()),
            "name": name,
            "organization": self.organization_id,
            "organization_name": self.organization_name,
            "created_at": _now(),
        }
        with self.lock:
            self.workspaces[workspace["id"]] = workspace
        return workspace

    def issue_token(self, workspace_id: str) -> str:
        """An agent token for another workspace of the organization."""
        token = secrets.token_hex(20)
        with self.lock:
            self.tokens[token] = workspace_id
        return token

    # -- authentication and errors ---------------------------------------------------------

    def _workspace_of(self, request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.workspaces[self.tokens[token.strip()]] if scheme == "Token" else {}

    def authenticate(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Token" or not token.strip():
            # DRF's TokenAuthentication ignores other schemes: the request counts as anonymous.
            detail = "Authentication credentials were not provided."
        elif token.strip() not in self.tokens:
            detail = "Invalid token."
        else:
            return None
        response = json_response({"detail": detail}, 401)
        response.headers["WWW-Authenticate"] = "Token"
        return response

    def error(self, status: int, message: str) -> Response:
        return json_response({"detail": message}, status)

    # -- routing -------------------------------------------------------------------------

    def routes(self) -> list[Rule]:
        rules = [
            Rule("/api/v1/operator/health/", methods=["POST"], endpoint="report_health"),
            Rule("/api/v1/organizations/", methods=["GET"], endpoint="list_organizations"),
            Rule("/api/v1/organizations/<object_id>/", methods=["GET"], endpoint="get_organization"),
            Rule("/api/v1/workspaces/", methods=["GET"], endpoint="list_workspaces"),
            Rule("/api/v1/workspaces/<object_id>/", methods=["GET"], endpoint="get_workspace"),
            Rule("/api/v1/blocks/", methods=["GET"], endpoint="list_blocks"),
            Rule("/api/v1/blocks/", methods=["POST"], endpoint="create_block"),
            Rule("/api/v1/blocks/<object_id>/", methods=["GET"], endpoint="get_block"),
        ]
        for name in FAMILIES:
            base = f"/api/v1/{name}/"
            rules += [
                Rule(base, methods=["GET"], endpoint="list_objects", defaults={"family": name}),
                Rule(base, methods=["POST"], endpoint="create_object", defaults={"family": name}),
                Rule(
                    f"{base}<object_id>/", methods=["GET"], endpoint="get_object", defaults={"family": name}
                ),
                Rule(
                    f"{base}<object_id>/",
                    methods=["PUT"],
                    endpoint="replace_object",
                    defaults={"family": name},
                ),
                Rule(
                    f"{base}<object_id>/",
                    methods=["PATCH"],
                    endpoint="patch_object",
                    defaults={"family": name},
                ),
                Rule(
                    f"{base}<object_id>/",
                    methods=["DELETE"],
                    endpoint="delete_object",
                    defaults={"family": name},
                ),
            ]
        return rules

    def _answer(self, handler: Any, *args: Any) -> Response:
        try:
            with self.lock:
                return handler(*args)
        except ApiError as exc:
            return json_response(exc.body, exc.status)

    # -- schema-driven representation ------------------------------------------------------

    def _properties(self, schema: str) -> dict[str, Any]:
        return self.contract.document["components"]["schemas"][schema]["properties"]  # type: ignore[union-attr]

    def _represent(self, family: Family, stored: dict[str, Any]) -> dict[str, Any]:
        shown = {}
        for field, declared in self._properties(family.schema).items():
            shown[field] = (
                copy.deepcopy(stored[field]) if field in stored else copy.deepcopy(declared.get("default"))
            )
        return shown

    # -- lists ---------------------------------------------------------------------------

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        try:
            page = int(request.args.get("page", "1"))
            size = min(int(request.args.get("page_size", str(self.page_size))), MAX_PAGE_SIZE)
        except ValueError:
            raise ApiError(404, {"detail": "Invalid page."}) from None
        last_page = max(1, -(-len(items) // max(size, 1)))
        if page < 1 or page > last_page or size < 1:
            raise ApiError(404, {"detail": "Invalid page."})

        def link(number: int) -> str:
            query = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
            if number > 1:
                query.append(("page", str(number)))
            return f"{request.base_url}{'?' + urlencode(query) if query else ''}"

        return json_response(
            {
                "count": len(items),
                "next": link(page + 1) if page < last_page else None,
                "previous": link(page - 1) if page > 1 else None,
                "results": items[(page - 1) * size : page * size],
            }
        )

    @staticmethod
    def _filtered(
        request: Request, items: list[dict[str, Any]], filters: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        for name in filters:
            if name not in request.args:
                continue
            wanted = request.args[name]
            if name in _UUID_FILTERS and not _is_uuid(wanted):
                raise ApiError(400, {name: ["Enter a valid UUID."]})
            items = [item for item in items if str(item.get(name)) == wanted]
        return items

    # -- operator health -----------------------------------------------------------------

    def report_health(self, request: Request) -> Response:
        workspace = self._workspace_of(request)
        with self.lock:
            self.health_reports.append(
                {"workspace": workspace["id"], **(request.get_json(silent=True) or {})}
            )
            cluster = next(
                (c for c in self.objects["clusters"].values() if c["workspace"] == workspace["id"]), None
            )
        return json_response(
            {
                "status": "ok",
                "workspace_id": workspace["id"],
                "workspace_name": workspace["name"],
                "organization_id": workspace["organization"],
                "organization_name": workspace["organization_name"],
                "cluster_id": cluster["id"] if cluster else None,
                "received_at": _now(),
            }
        )

    # -- organizations, workspaces, blocks -------------------------------------------------

    def _organization_of(self, request: Request) -> str:
        return self._workspace_of(request)["organization"]

    def list_organizations(self, request: Request) -> Response:
        def listing() -> Response:
            mine = [self.organizations[self._organization_of(request)]]
            return self._page(request, self._filtered(request, copy.deepcopy(mine), ("name",)))

        return self._answer(listing)

    def get_organization(self, request: Request, object_id: str) -> Response:
        if object_id != self._organization_of(request):
            return self.error(404, "No Organization matches the given query.")
        return json_response(self.organizations[object_id])

    def _visible_workspaces(self, request: Request) -> list[dict[str, Any]]:
        organization = self._organization_of(request)
        return [w for w in self.workspaces.values() if w["organization"] == organization]

    def list_workspaces(self, request: Request) -> Response:
        def listing() -> Response:
            visible = copy.deepcopy(self._visible_workspaces(request))
            filters = ("name", "organization", "organization_name")
            return self._page(request, self._filtered(request, visible, filters))

        return self._answer(listing)

    def get_workspace(self, request: Request, object_id: str) -> Response:
        with self.lock:
            found = next((w for w in self._visible_workspaces(request) if w["id"] == object_id), None)
        return json_response(found) if found else self.error(404, "No Workspace matches the given query.")

    def _visible_blocks(self, request: Request) -> list[dict[str, Any]]:
        workspace_ids = {w["id"] for w in self._visible_workspaces(request)}
        return [b for b in self.blocks.values() if b["workspace"] in workspace_ids]

    def list_blocks(self, request: Request) -> Response:
        def listing() -> Response:
            visible = copy.deepcopy(self._visible_blocks(request))
            return self._page(request, self._filtered(request, visible, ("workspace", "name")))

        return self._answer(listing)

    def create_block(self, request: Request) -> Response:
        def create() -> Response:
            body = request.get_json(silent=True) or {}
            if body["workspace"] not in {w["id"] for w in self._visible_workspaces(request)}:
                raise ApiError(
                    400, {"workspace": [f'Invalid pk "{body["workspace"]}" - object does not exist.']}
                )
            if any(
                b["workspace"] == body["workspace"] and b["name"] == body["name"]
                for b in self.blocks.values()
            ):
                raise ApiError(
                    400, {"non_field_errors": ["The fields workspace, name must make a unique set."]}
                )
            block = {
                "id": str(uuid.uuid4()),
                "workspace": body["workspace"],
                "name": body["name"],
                "version": body.get("version"),
                "description": body.get("description", ""),
                "created_at": _now(),
            }
            self.blocks[block["id"]] = block
            return json_response(block, 201)

        return self._answer(create)

    def get_block(self, request: Request, object_id: str) -> Response:
        with self.lock:
            found = next((b for b in self._visible_blocks(request) if b["id"] == object_id), None)
        return json_response(found) if found else self.error(404, "No Block matches the given query.")

    # -- discovered resources ---------------------------------------------------------------

    def _scoped(self, request: Request, family: str) -> list[dict[str, Any]]:
        workspace = self._workspace_of(request)["id"]
        return [o for o in self.objects[family].values() if o["workspace"] == workspace]

    def _object(self, request: Request, family: str, object_id: str) -> dict[str, Any]:
        found = next((o for o in self._scoped(request, family) if o["id"] == object_id), None)
        if found is None:
            raise ApiError(404, {"detail": f"No {FAMILIES[family].schema} matches the given query."})
        return found

    def _check_references(self, request: Request, family: str, candidate: dict[str, Any]) -> None:
        problems: dict[str, list[str]] = {}
        if "cluster" in candidate and candidate["cluster"] not in {
            c["id"] for c in self._scoped(request, "clusters")
        }:
            problems["cluster"] = [f'Invalid pk "{candidate["cluster"]}" - object does not exist.']
        block = candidate.get("block")
        if block is not None and block not in {b["id"] for b in self._visible_blocks(request)}:
            problems["block"] = [f'Invalid pk "{block}" - object does not exist.']
        if problems:
            raise ApiError(400, problems)
        key = FAMILIES[family].natural_key
        clash = next(
            (
                o
                for o in self.objects[family].values()
                if o["id"] != candidate.get("id") and all(o.get(k) == candidate.get(k) for k in key)
            ),
            None,
        )
        if clash is not None:
            raise ApiError(
                400, {"non_field_errors": [f"The fields {', '.join(key)} must make a unique set."]}
            )

    def list_objects(self, request: Request, family: str) -> Response:
        def listing() -> Response:
            shown = [self._represent(FAMILIES[family], o) for o in self._scoped(request, family)]
            return self._page(request, self._filtered(request, shown, FAMILIES[family].filters))

        return self._answer(listing)

    def create_object(self, request: Request, family: str) -> Response:
        def create() -> Response:
            workspace = self._workspace_of(request)
            now = _now()
            candidate = {
                **copy.deepcopy(request.get_json(silent=True) or {}),
                "id": str(uuid.uuid4()),
                "workspace": workspace["id"],
                "organization": workspace["organization"],
                "created_at": now,
                "updated_at": now,
            }
            self._check_references(request, family, candidate)
            self.objects[family][candidate["id"]] = candidate
            return json_response(self._represent(FAMILIES[family], candidate), 201)

        return self._answer(create)

    def get_object(self, request: Request, family: str, object_id: str) -> Response:
        return self._answer(
            lambda: json_response(self._represent(FAMILIES[family], self._object(request, family, object_id)))
        )

    def replace_object(self, request: Request, family: str, object_id: str) -> Response:
        # A DRF update (PUT) requires the required fields and, like PATCH, leaves unsent ones alone.
        return self._update(request, family, object_id)

    def patch_object(self, request: Request, family: str, object_id: str) -> Response:
        return self._update(request, family, object_id)

    def _update(self, request: Request, family: str, object_id: str) -> Response:
        def update() -> Response:
            stored = self._object(request, family, object_id)
            candidate = {**stored, **copy.deepcopy(request.get_json(silent=True) or {}), "updated_at": _now()}
            self._check_references(request, family, candidate)
            stored.clear()
            stored.update(candidate)
            return json_response(self._represent(FAMILIES[family], stored))

        return self._answer(update)

    def delete_object(self, request: Request, family: str, object_id: str) -> Response:
        def delete() -> Response:
            self._object(request, family, object_id)
            del self.objects[family][object_id]
            if family == "clusters":
                for items in self.objects.values():
                    for dependent in [k for k, o in items.items() if o.get("cluster") == object_id]:
                        del items[dependent]
            return Response(status=204)

        return self._answer(delete)
