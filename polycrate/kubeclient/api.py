"""`KubeClient`: JSON requests to the API server, through the one retry policy.

Requests are authenticated by the configured `ApiClient` (kubeconfig auth, token refresh, TLS,
proxy) but bodies stay plain dicts: only a few fields of each object matter, and the generated
models would drop fields of custom resources they do not know. Requests go straight to the
client's urllib3 pool with urllib3's own retries off, so `retrying.RetryPolicy` alone decides
what is resent and a timeout bounds each attempt. A write checks the running reconcile's fence
before every attempt: a run that lost its key's lock sends nothing more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, Unpack

import urllib3
from kubernetes.client import ApiClient

from polycrate.fence import check_fence_for
from polycrate.kubeclient.errors import KubeError, status_error, unreachable
from polycrate.kubeclient.retrying import RetryPolicy, never_sent

JsonObject = dict[str, Any]
QueryValue = str | int | bool
Timeout = float | tuple[float, float]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

DEFAULT_REQUEST_TIMEOUT = 30.0


class RequestOptions(TypedDict, total=False):
    """What a request may say besides method and path (defaults: JSON, the client's timeout and policy)."""

    query: Mapping[str, QueryValue] | None
    body: Any
    content_type: str
    accept: str
    timeout: Timeout | None
    retry: RetryPolicy | None


class KubeClient:
    """JSON requests against the API server described by an `ApiClient`."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        request_timeout: Timeout = DEFAULT_REQUEST_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    @property
    def host(self) -> str:
        """The API server URL, as configured (e.g. https://kubernetes.default.svc)."""
        return str(self.api_client.configuration.host)

    def close(self) -> None:
        self.api_client.close()

    def send(self, method: str, path: str, **options: Unpack[RequestOptions]) -> urllib3.BaseHTTPResponse:
        """The response to a request, its body unread, once its status is below 400.

        Raises the `KubeError` of the last attempt when the policy gives up.
        """
        policy = options.get("retry") or self.retry
        what = f"{method} {path}"
        attempt = 1
        while True:
            check_fence_for(method)
            sent = True
            try:
                response = self._send_once(method, path, options)
                if response.status < 400:
                    return response
                try:
                    payload = response.data
                finally:
                    response.release_conn()
                error: KubeError = status_error(response.status, payload, what=what, headers=response.headers)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                sent = not never_sent(exc)
                error = unreachable(self.host, what, exc)
                error.__cause__ = exc
            delay = policy.delay(attempt, error) if policy.retryable(method, error, sent=sent) else None
            if delay is None:
                raise error
            self._sleep(delay)
            attempt += 1

    def _send_once(self, method: str, path: str, options: RequestOptions) -> urllib3.BaseHTTPResponse:
        headers = {"Accept": options.get("accept", JSON)}
        body = options.get("body")
        if body is not None:
            headers["Content-Type"] = options.get("content_type", JSON)
        query = options.get("query")
        method, url, header_params, serialized_body, _ = self.api_client.param_serialize(
            method,
            path,
            query_params=[(k, _query_text(v)) for k, v in (query or {}).items()] or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        timeout = options.get("timeout") or self.request_timeout
        if isinstance(timeout, tuple):
            bounds = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            bounds = urllib3.Timeout(total=timeout)
        return self.api_client.rest_client.pool_manager.request(
            method,
            url,
            body=None if serialized_body is None else json.dumps(serialized_body),
            headers=header_params,
            timeout=bounds,
            retries=False,
            preload_content=False,
        )

    def request(self, method: str, path: str, **options: Unpack[RequestOptions]) -> JsonObject:
        """Send one request (resent as the policy allows) and return the decoded JSON body."""
        response = self.send(method, path, **options)
        try:
            payload = response.data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise unreachable(self.host, f"{method} {path}", exc) from exc
        finally:
            response.release_conn()
        return json.loads(payload) if payload else {}

    def get(self, path: str, **options: Unpack[RequestOptions]) -> JsonObject:
        return self.request("GET", path, **options)

    def create(self, path: str, body: JsonObject, **options: Unpack[RequestOptions]) -> JsonObject:
        return self.request("POST", path, body=body, **options)

    def replace(self, path: str, body: JsonObject, **options: Unpack[RequestOptions]) -> JsonObject:
        return self.request("PUT", path, body=body, **options)

    def patch(self, path: str, body: Any, *, content_type: str = MERGE_PATCH) -> JsonObject:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str) -> JsonObject:
        return self.request("DELETE", path)


def _query_text(value: QueryValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
