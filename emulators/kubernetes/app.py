"""The WSGI application: Kubernetes REST paths, query parameters and media types over HTTP.

It maps `/api/v1/...` and `/apis/<group>/<version>/...` (namespaced or not, with the /status
subresource) onto `ApiServer` verbs, negotiates the response form from `Accept` (plain JSON,
server-side `Table` for kubectl, `PartialObjectMetadata`, aggregated discovery v2), streams
watches as newline-delimited JSON over a chunked response whose headers go out at once, and
turns every `ApiError` into a `Status` body with its code. Request bodies may be JSON, YAML,
or the protobuf kubectl's generators send. Warnings (unknown fields under
`fieldValidation=Warn`) travel in `Warning: 299` headers like the real server's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from emulators.faults import FaultPlan
from emulators.kubernetes import openapi, protobuf, resources, tables
from emulators.kubernetes import status as statuses
from emulators.kubernetes.access import AccessControl, RequestAttributes, UserInfo
from emulators.kubernetes.apiserver import ApiServer, DeleteOptions, ListResult, WriteOptions, WriteResult
from emulators.kubernetes.resources import ResourceType
from emulators.kubernetes.selectors import parse_field_selector, parse_label_selector
from emulators.kubernetes.status import ApiError
from emulators.kubernetes.watches import WatchRequest, WatchStream

logger = logging.getLogger("emulators.kubernetes")

JsonObject = dict[str, Any]
KUBERNETES_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "polycrate-emulator",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_JSON_TYPES = {"application/json", "*/*", "application/*", ""}
_BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]


@dataclass(frozen=True)
class MediaRange:
    media_type: str
    params: dict[str, str]


def parse_accept(header: str | None) -> list[MediaRange]:
    ranges = []
    for part in (header or "").split(","):
        pieces = [piece.strip() for piece in part.split(";")]
        if not pieces[0] and len(pieces) == 1:
            continue
        params = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip()
        ranges.append(MediaRange(pieces[0].lower(), params))
    return ranges


@dataclass(frozen=True)
class OutputForm:
    form: str  # "object", "table" or "partial"
    api_version: str = "meta.k8s.io/v1"


def negotiate(header: str | None) -> OutputForm:
    ranges = parse_accept(header)
    if not ranges:
        return OutputForm("object")
    for media in ranges:
        if media.media_type not in _JSON_TYPES:
            continue
        shape = media.params.get("as")
        if shape is None:
            return OutputForm("object")
        version = f"meta.k8s.io/{media.params.get('v', 'v1')}"
        if shape == "Table" and media.params.get("g", "meta.k8s.io") == "meta.k8s.io":
            return OutputForm("table", version)
        if shape in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return OutputForm("partial", version)
    raise statuses.not_acceptable(["application/json", "application/yaml"])


def _wants_aggregated_discovery(header: str | None) -> bool:
    for media in parse_accept(header):
        if media.params.get("as") == "APIGroupDiscoveryList" and media.params.get("v") == "v2":
            return True
        if media.media_type in _JSON_TYPES and "as" not in media.params:
            return False
    return False


def json_response(
    body: Any, status: int = 200, *, content_type: str = "application/json", warnings: list[str] | None = None
) -> Response:
    response = Response(json.dumps(body, separators=(",", ":")), status=status, content_type=content_type)
    for warning in warnings or ():
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def _flag(args: MultiDict[str, str], name: str) -> bool:
    return args.get(name, "").lower() in ("true", "1")


def _integer(args: MultiDict[str, str], name: str) -> int | None:
    raw = args.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as error:
        raise statuses.bad_request(f"invalid value for {name}: {raw!r}") from error


@dataclass(frozen=True)
class ResourceRoute:
    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subresource: str | None


_FAULT_REASONS = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "Timeout", 500: "InternalError"}


class KubeApiApp:
    """WSGI callable serving one emulated cluster."""

    def __init__(
        self,
        api: ApiServer,
        *,
        latency_seconds: Callable[[], float],
        epoch: Callable[[], int],
        bookmark_interval: Callable[[], float],
        server_address: Callable[[], str],
        access: AccessControl | None = None,
    ):
        self.api = api
        self.access = access or AccessControl(api.store)
        self.registry = api.registry
        self.latency_seconds = latency_seconds
        self.epoch = epoch
        self.bookmark_interval = bookmark_interval
        self.server_address = server_address
        self.faults = FaultPlan()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            delay = self.latency_seconds()
            if delay > 0:
                time.sleep(delay)
            response = self._injected_fault(request) or self.dispatch(request)
        except ApiError as error:
            response = json_response(error.to_status(), error.code)
        except Exception as error:  # a bug in the emulator must still answer like a server
            logger.exception("kube emulator failed on %s %s", request.method, request.path)
            failure = ApiError(
                500, "InternalError", f"Internal error occurred: {type(error).__name__}: {error}"
            )
            response = json_response(failure.to_status(), 500)
        return response(environ, start_response)

    def _injected_fault(self, request: Request) -> Response | None:
        """An injected failure answered as kube-apiserver does: a Status, Retry-After on 429/503."""
        fault = self.faults.decide(request.path)
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status is None:
            return None
        reason = _FAULT_REASONS.get(fault.status, "InternalError")
        details = (
            {"retryAfterSeconds": int(round(fault.retry_after))} if fault.retry_after is not None else {}
        )
        response = json_response(
            ApiError(fault.status, reason, fault.message, details).to_status(), fault.status
        )
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(int(round(fault.retry_after)))
        return response

    # --- routing ------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        user = self.access.authenticate(request.headers.get("Authorization"))
        parts = [part for part in request.path.split("/") if part]
        route = None
        if len(parts) >= 3 and parts[0] == "api":
            route = self._route("", parts[1], parts[2:])
        elif len(parts) >= 4 and parts[0] == "apis":
            route = self._route(parts[1], parts[2], parts[3:])
        if route is None:
            verb = request.method.lower()
            self.access.authorize(user, RequestAttributes(verb, request.path, resource_request=False))
            fixed = self._non_resource(request, parts) if request.method == "GET" else None
            if fixed is not None:
                return fixed
            raise statuses.path_not_found()
        self.access.authorize(user, self._attributes(request, route))
        if route.group == "authorization.k8s.io" and request.method == "POST" and route.name is None:
            return self._access_review(request, route, user)
        return self._resource(request, route)

    @staticmethod
    def _attributes(request: Request, route: ResourceRoute) -> RequestAttributes:
        """The verb and resource of a request, as kube-apiserver's RequestInfo derives them."""
        method = request.method
        if method == "GET":
            verb = "get" if route.name else ("watch" if _flag(request.args, "watch") else "list")
        elif method == "DELETE":
            verb = "delete" if route.name else "deletecollection"
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
        namespace = route.namespace or ""
        if route.group == "" and route.plural == "namespaces" and route.name:
            namespace = route.name  # a Namespace is authorized within itself
        return RequestAttributes(
            verb,
            request.path,
            group=route.group,
            resource=route.plural,
            subresource=route.subresource or "",
            name=route.name or "",
            namespace=namespace,
        )

    def _non_resource(self, request: Request, parts: list[str]) -> Response | None:
        accept = request.headers.get("Accept")
        if parts in ([], ["healthz"], ["livez"], ["readyz"]):
            return Response("ok", content_type="text/plain")
        if parts == ["version"]:
            return json_response(KUBERNETES_VERSION)
        if parts in (["api"], ["apis"]):
            core = parts == ["api"]
            if _wants_aggregated_discovery(accept):
                return json_response(
                    resources.aggregated_discovery(self.registry, core=core),
                    content_type=resources.AGGREGATED_DISCOVERY_MEDIA_TYPE,
                )
            if core:
                return json_response(resources.api_versions(self.server_address()))
            return json_response(resources.api_group_list(self.registry))
        if len(parts) == 2 and parts[0] == "api":
            found = resources.api_resource_list(self.registry, "", parts[1])
            if found is None:
                raise statuses.path_not_found()
            return json_response(found)
        if len(parts) == 2 and parts[0] == "apis":
            versions = dict(self.registry.groups()).get(parts[1])
            if not versions:
                raise statuses.path_not_found()
            return json_response(resources.api_group(parts[1], versions))
        if len(parts) == 3 and parts[0] == "apis":
            found = resources.api_resource_list(self.registry, parts[1], parts[2])
            if found is None:
                raise statuses.path_not_found()
            return json_response(found)
        if parts[:2] == ["openapi", "v3"]:
            if len(parts) == 2:
                return json_response(openapi.root_document(self.registry))
            document = None
            if parts[2:3] == ["api"] and len(parts) == 4:
                document = openapi.group_version_document(self.registry, "", parts[3])
            elif parts[2:3] == ["apis"] and len(parts) == 5:
                document = openapi.group_version_document(self.registry, parts[3], parts[4])
            if document is None:
                raise statuses.path_not_found()
            return json_response(document)
        if parts and parts[0] == "openapi":
            raise statuses.path_not_found()
        return None

    def _route(self, group: str, version: str, rest: list[str]) -> ResourceRoute:
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            # As kube-apiserver's RequestInfo: only status and finalize follow a Namespace's name;
            # anything else is a namespaced resource, served or not (404 after authorization).
            namespace_subresource = len(rest) == 3 and rest[2] in ("status", "finalize")
            if not namespace_subresource:
                namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise statuses.path_not_found()
        return ResourceRoute(
            group,
            version,
            namespace,
            rest[0],
            rest[1] if len(rest) > 1 else None,
            rest[2] if len(rest) > 2 else None,
        )

    # --- resources ----------------------------------------------------------------------

    def _resource(self, request: Request, route: ResourceRoute) -> Response:
        rt = self.registry.lookup(route.group, route.version, route.plural)
        if rt is None or (route.namespace is not None and not rt.namespaced):
            raise statuses.path_not_found()
        if route.subresource is not None and route.subresource in dict(rt.extra_subresources):
            if request.method != "POST":
                raise statuses.method_not_allowed(
                    request.method, f"{rt.plural}/{route.subresource}", rt.group
                )
            return self._token_request(request, rt, route)
        if route.subresource is not None and not (route.subresource == "status" and rt.status_subresource):
            raise statuses.path_not_found()
        method = request.method
        if route.name is None:
            if method == "GET":
                if _flag(request.args, "watch"):
                    return self._watch(request, rt, route.namespace)
                return self._list(request, rt, route.namespace)
            if method == "POST":
                if rt.namespaced and route.namespace is None:
                    raise statuses.method_not_allowed("POST", rt.plural, rt.group)
                result = self.api.create(
                    rt, route.namespace, self._body(request), self._write_options(request)
                )
                return self._write_response(request, rt, result)
            if method == "DELETE":
                return self._delete_collection(request, rt, route.namespace)
            raise statuses.method_not_allowed(method, rt.plural, rt.group)
        if rt.namespaced and route.namespace is None:
            raise statuses.path_not_found()
        if method == "GET":
            return self._object_response(request, rt, self.api.get(rt, route.namespace, route.name))
        if method == "PUT":
            result = self.api.update(
                rt,
                route.namespace,
                route.name,
                self._body(request),
                self._write_options(request),
                subresource=route.subresource,
            )
            return self._write_response(request, rt, result)
        if method == "PATCH":
            result = self.api.patch(
                rt,
                route.namespace,
                route.name,
                request.get_data(),
                request.headers.get("Content-Type", ""),
                self._write_options(request),
                subresource=route.subresource,
            )
            return self._write_response(request, rt, result)
        if method == "DELETE" and route.subresource is None:
            return json_response(
                self.api.delete(rt, route.namespace, route.name, self._delete_options(request))
            )
        raise statuses.method_not_allowed(method, rt.plural, rt.group)

    def _access_review(self, request: Request, route: ResourceRoute, user: UserInfo) -> Response:
        """SelfSubjectAccessReview (the caller) or SubjectAccessReview (spec.user, spec.groups)."""
        kinds = {
            "selfsubjectaccessreviews": "SelfSubjectAccessReview",
            "subjectaccessreviews": "SubjectAccessReview",
        }
        if route.plural not in kinds:
            raise statuses.path_not_found()
        body = self._body(request)
        spec = (body.get("spec") if isinstance(body, dict) else None) or {}
        subject = user
        if route.plural == "subjectaccessreviews":
            subject = UserInfo(str(spec.get("user") or ""), tuple(spec.get("groups") or ()))
        resource = spec.get("resourceAttributes")
        non_resource = spec.get("nonResourceAttributes")
        if resource:
            attributes = RequestAttributes(
                str(resource.get("verb") or ""),
                "",
                group=str(resource.get("group") or ""),
                resource=str(resource.get("resource") or ""),
                subresource=str(resource.get("subresource") or ""),
                name=str(resource.get("name") or ""),
                namespace=str(resource.get("namespace") or ""),
            )
        elif non_resource:
            attributes = RequestAttributes(
                str(non_resource.get("verb") or ""),
                str(non_resource.get("path") or ""),
                resource_request=False,
            )
        else:
            raise statuses.bad_request(
                "spec: Invalid value: resourceAttributes or nonResourceAttributes is required"
            )
        return json_response(
            {
                "kind": kinds[route.plural],
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": {"allowed": self.access.allowed(subject, attributes)},
            },
            201,
        )

    def _token_request(self, request: Request, rt: ResourceType, route: ResourceRoute) -> Response:
        """TokenRequest: a bearer token for the ServiceAccount (what `kubectl create token` asks for)."""
        account = self.api.get(rt, route.namespace, str(route.name))
        body = self._body(request) if request.get_data() else {}
        spec = dict((body or {}).get("spec") or {}) if isinstance(body, dict) else {}
        spec.setdefault("audiences", ["https://kubernetes.default.svc.cluster.local"])
        spec["expirationSeconds"] = int(spec.get("expirationSeconds") or 3600)
        spec.setdefault("boundObjectRef", None)
        expires = time.gmtime(time.time() + spec["expirationSeconds"])
        return json_response(
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": route.name, "namespace": route.namespace, "creationTimestamp": None},
                "spec": spec,
                "status": {
                    "token": self.access.issue_token(account),
                    "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", expires),
                },
            },
            201,
        )

    def _body(self, request: Request) -> Any:
        raw = request.get_data()
        content_type = (
            (request.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        )
        try:
            if content_type in ("application/yaml", "application/x-yaml"):
                return yaml.safe_load(raw)
            if content_type in ("application/json", "*/*", ""):
                return json.loads(raw or b"null")
            if content_type == protobuf.PROTOBUF_MEDIA_TYPE:
                return protobuf.decode_object(raw)
        except protobuf.ProtobufError as error:
            raise statuses.unsupported_media_type(content_type, _BODY_TYPES, str(error)) from error
        except (ValueError, yaml.YAMLError) as error:
            raise statuses.bad_request(f"couldn't get version/kind; json parse error: {error}") from error
        raise statuses.unsupported_media_type(content_type, _BODY_TYPES)

    def _write_options(self, request: Request) -> WriteOptions:
        validation = request.args.get("fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise statuses.bad_request(
                f'fieldValidation must be one of "Ignore", "Warn", or "Strict", got {validation!r}'
            )
        dry_run = request.args.getlist("dryRun")
        if any(value != "All" for value in dry_run):
            raise statuses.bad_request(f"unsupported dry run value: {dry_run}")
        return WriteOptions(
            dry_run=bool(dry_run),
            field_validation=validation,
            field_manager=request.args.get("fieldManager", ""),
            force=_flag(request.args, "force"),
        )

    def _delete_options(self, request: Request) -> DeleteOptions:
        body: Any = {}
        if request.get_data():
            body = self._body(request) or {}
            if not isinstance(body, dict):
                raise statuses.bad_request("DeleteOptions must be an object")
        preconditions = body.get("preconditions") or {}
        orphan = body.get("orphanDependents")
        if "orphanDependents" in request.args:
            orphan = _flag(request.args, "orphanDependents")
        return DeleteOptions(
            propagation_policy=request.args.get("propagationPolicy") or body.get("propagationPolicy"),
            orphan_dependents=orphan,
            precondition_uid=preconditions.get("uid"),
            precondition_resource_version=preconditions.get("resourceVersion"),
            dry_run=bool(request.args.getlist("dryRun") or body.get("dryRun")),
        )

    def _selectors(self, request: Request, rt: ResourceType) -> tuple[Any, Any]:
        labels = parse_label_selector(request.args.get("labelSelector"))
        fields = parse_field_selector(
            request.args.get("fieldSelector"), allowed=rt.field_labels, custom_resource=rt.is_custom
        )
        return labels, fields

    # --- responses ----------------------------------------------------------------------

    def _render(self, request: Request, rt: ResourceType, obj: JsonObject) -> JsonObject:
        output = negotiate(request.headers.get("Accept"))
        if output.form == "table":
            return tables.table(
                rt,
                [obj],
                list_metadata={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                api_version=output.api_version,
                include_object=request.args.get("includeObject", "Metadata"),
                include_headers=True,
            )
        if output.form == "partial":
            return tables.partial_object_metadata(obj, output.api_version)
        return obj

    def _object_response(self, request: Request, rt: ResourceType, obj: JsonObject) -> Response:
        return json_response(self._render(request, rt, obj))

    def _write_response(self, request: Request, rt: ResourceType, result: WriteResult) -> Response:
        return json_response(
            self._render(request, rt, result.obj), 201 if result.created else 200, warnings=result.warnings
        )

    def _list_body(self, request: Request, rt: ResourceType, listed: ListResult) -> JsonObject:
        metadata: JsonObject = {"resourceVersion": listed.resource_version}
        if listed.continue_token:
            metadata["continue"] = listed.continue_token
        if listed.remaining is not None:
            metadata["remainingItemCount"] = listed.remaining
        output = negotiate(request.headers.get("Accept"))
        if output.form == "table":
            return tables.table(
                rt,
                listed.items,
                list_metadata=metadata,
                api_version=output.api_version,
                include_object=request.args.get("includeObject", "Metadata"),
            )
        if output.form == "partial":
            return {
                "kind": "PartialObjectMetadataList",
                "apiVersion": output.api_version,
                "metadata": metadata,
                "items": [tables.partial_object_metadata(item, output.api_version) for item in listed.items],
            }
        return {
            "apiVersion": rt.api_version,
            "kind": rt.list_kind,
            "metadata": metadata,
            "items": listed.items,
        }

    def _list(self, request: Request, rt: ResourceType, namespace: str | None) -> Response:
        labels, fields = self._selectors(request, rt)
        negotiate(request.headers.get("Accept"))
        listed = self.api.list(
            rt,
            namespace,
            labels=labels,
            fields=fields,
            limit=_integer(request.args, "limit") or 0,
            continue_token=request.args.get("continue", ""),
            resource_version=request.args.get("resourceVersion", ""),
            resource_version_match=request.args.get("resourceVersionMatch", ""),
        )
        return json_response(self._list_body(request, rt, listed))

    def _delete_collection(self, request: Request, rt: ResourceType, namespace: str | None) -> Response:
        labels, fields = self._selectors(request, rt)
        listed = self.api.delete_collection(
            rt, namespace, labels=labels, fields=fields, options=self._delete_options(request)
        )
        return json_response(
            {
                "apiVersion": rt.api_version,
                "kind": rt.list_kind,
                "metadata": {"resourceVersion": listed.resource_version},
                "items": listed.items,
            }
        )

    def _watch(self, request: Request, rt: ResourceType, namespace: str | None) -> Response:
        labels, fields = self._selectors(request, rt)
        output = negotiate(request.headers.get("Accept"))
        initial_events = request.args.get("sendInitialEvents")
        watch_request = WatchRequest(
            rt=rt,
            namespace=namespace,
            labels=labels,
            fields=fields,
            resource_version=request.args.get("resourceVersion", ""),
            timeout_seconds=_integer(request.args, "timeoutSeconds") or None,  # 0 means "not set"
            allow_bookmarks=_flag(request.args, "allowWatchBookmarks"),
            send_initial_events=None if initial_events is None else initial_events.lower() == "true",
        )
        epoch = self.epoch()

        def stopped() -> bool:
            # A restart ends every stream; deleting a CRD ends the streams of its resource.
            return self.epoch() != epoch or self.registry.lookup(rt.group, rt.version, rt.plural) is None

        stream = WatchStream(
            self.api.store,
            watch_request,
            stopped=stopped,
            bookmark_interval=self.bookmark_interval(),
        )
        include_object = request.args.get("includeObject", "Metadata")

        def encode(event: JsonObject) -> bytes:
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                obj = event["object"]
                if output.form == "table":
                    event = {
                        "type": event["type"],
                        "object": tables.table(
                            rt,
                            [obj],
                            list_metadata={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                            api_version=output.api_version,
                            include_object=include_object,
                        ),
                    }
                elif output.form == "partial":
                    event = {
                        "type": event["type"],
                        "object": tables.partial_object_metadata(obj, output.api_version),
                    }
            return json.dumps(event, separators=(",", ":")).encode() + b"\n"

        def body() -> Iterator[bytes]:
            # An empty first chunk makes the server send the response headers right away, so
            # clients see the watch established before the first event.
            yield b""
            for event in stream:
                yield encode(event)

        return Response(body(), status=200, content_type="application/json", direct_passthrough=True)
