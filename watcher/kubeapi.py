"""Raw JSON access to the Kubernetes API for list-watch, Leases and discovery.

The watcher needs three things the generated client models get in the way of: dicts instead
of model objects (only keys and a few metadata fields matter), a watch stream whose every
socket read is bounded by an inactivity timeout, and a way to cut a blocked stream from another
thread. So requests go through the configured `ApiClient` (kubeconfig auth, TLS, token refresh)
but bodies stay JSON, or metadata only (PartialObjectMetadata) for sources whose content the
watcher must not hold, such as Secrets. Every failure becomes one of three errors: `KubeApiError` (the server
answered with a Status), `GoneError` (410: the resourceVersion is too old, relist) and
`ApiUnreachableError` (no answer: connection refused, reset, timed out).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
from kubernetes.client import ApiClient

from polycrate.kubehttp import JSON, serialize_request, status_details

JsonObject = dict[str, Any]
QueryValue = str | int | bool

# Metadata only (name, labels, resourceVersion, ...): the content negotiation every API server
# since 1.15 supports; plain JSON stays acceptable so an older server still answers.
METADATA_LIST = f"{JSON};as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, {JSON}"
METADATA_WATCH = f"{JSON};as=PartialObjectMetadata;g=meta.k8s.io;v=v1, {JSON}"


class KubeApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.message = message


class GoneError(KubeApiError):
    """410: the requested resourceVersion (or continue token) has been compacted away."""


class ApiUnreachableError(Exception):
    """No usable answer from the API server (refused, reset, timed out, cut mid-stream)."""


class InactiveStreamError(ApiUnreachableError):
    """A watch stream delivered nothing, not even a bookmark, within the inactivity timeout."""


def _status_error(code: int, payload: bytes) -> KubeApiError:
    reason, message = status_details(payload)
    if code == 410:
        return GoneError(code, reason or "Expired", message)
    return KubeApiError(code, reason or "Error", message)


class WatchStream:
    """One open watch response: iterate for events, `close()` from any thread to cut it.

    Iteration yields the decoded watch events (`{"type": ..., "object": {...}}`). It stops
    when the server ends the stream (its `timeoutSeconds` ran out) and raises
    `ApiUnreachableError` when a read waits longer than the inactivity timeout or the
    connection breaks.
    """

    def __init__(self, response: urllib3.BaseHTTPResponse):
        self._response = response
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[JsonObject]:
        buffer = b""
        try:
            for chunk in self._chunks():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
        except urllib3.exceptions.ReadTimeoutError as exc:
            if self._closed.is_set():
                return
            raise InactiveStreamError(f"watch stream silent: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._closed.is_set():
                return
            raise ApiUnreachableError(f"watch stream broke: {type(exc).__name__}: {exc}") from exc

    def _chunks(self) -> Iterator[bytes]:
        response = self._response
        if response.chunked and response.supports_chunked_reads():
            yield from response.read_chunked(decode_content=True)
            return
        # Without chunked encoding, read1 returns what one recv delivers, so events are
        # handled as they arrive instead of waiting for a full buffer.
        while chunk := response.read1(65536):
            yield chunk

    def close(self) -> None:
        """Cut the stream; a reader blocked in another thread returns promptly."""
        if self._closed.is_set():
            return
        self._closed.set()
        # urllib3 raises RuntimeError or ValueError when the connection already ended or went
        # back to the pool; either way there is nothing left to cut.
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self._response.shutdown()
        self._response.release_conn()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class KubeApi:
    """JSON requests against the API server described by an `ApiClient`."""

    def __init__(self, api_client: ApiClient, *, request_timeout: float = 30.0):
        self._client = api_client
        self._request_timeout = request_timeout

    @property
    def host(self) -> str:
        """The API server URL, as configured (e.g. https://kubernetes.default.svc)."""
        return str(self._client.configuration.host)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        body: JsonObject | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
        accept: str = JSON,
    ) -> urllib3.BaseHTTPResponse:
        method, url, header_params, serialized_body = serialize_request(
            self._client,
            method,
            path,
            query=[(k, _query_text(v)) for k, v in (query or {}).items()],
            body=body,
            content_type=content_type,
            accept=accept,
        )
        timeout = timeout or self._request_timeout
        if isinstance(timeout, tuple):
            bounds = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            bounds = urllib3.Timeout(total=timeout)
        try:
            # Straight to the client's pool (its TLS and proxy setup) with retries off: the
            # callers retry with their own backoff, and a timeout must bound the whole request
            # (urllib3's default would silently re-send a timed-out read three more times).
            return self._client.rest_client.pool_manager.request(
                method,
                url,
                body=None if serialized_body is None else json.dumps(serialized_body),
                headers=header_params,
                timeout=bounds,
                retries=False,
                preload_content=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnreachableError(f"{self.host}: {_connection_reason(exc)}") from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        body: JsonObject | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        accept: str = JSON,
    ) -> JsonObject:
        """Send one request and return the decoded JSON body; raise on any error status."""
        response = self._send(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout, accept=accept
        )
        try:
            payload = response.data
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiUnreachableError(f"{self.host}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.release_conn()
        if response.status >= 400:
            raise _status_error(response.status, payload)
        return json.loads(payload) if payload else {}

    def get(
        self,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        timeout: float | None = None,
        accept: str = JSON,
    ) -> JsonObject:
        return self.request("GET", path, query=query, timeout=timeout, accept=accept)

    def create(self, path: str, body: JsonObject, *, timeout: float | None = None) -> JsonObject:
        return self.request("POST", path, body=body, timeout=timeout)

    def replace(self, path: str, body: JsonObject, *, timeout: float | None = None) -> JsonObject:
        return self.request("PUT", path, body=body, timeout=timeout)

    def watch(
        self,
        path: str,
        *,
        query: Mapping[str, QueryValue],
        inactivity_timeout: float,
        connect_timeout: float = 10.0,
        accept: str = JSON,
    ) -> WatchStream:
        """Open a watch; each read waits at most `inactivity_timeout` seconds for data."""
        response = self._send(
            "GET",
            path,
            query={**query, "watch": "true"},
            timeout=(connect_timeout, inactivity_timeout),
            accept=accept,
        )
        if response.status >= 400:
            try:
                payload = response.data
            finally:
                response.release_conn()
            raise _status_error(response.status, payload)
        return WatchStream(response)


def _connection_reason(exc: BaseException) -> str:
    """The innermost cause of a connection failure, e.g. "ConnectionRefusedError: [Errno 111] ..."."""
    cause: BaseException = exc
    while isinstance(cause, urllib3.exceptions.HTTPError) and getattr(cause, "reason", None) is not None:
        cause = cause.reason
    return f"{type(cause).__name__}: {cause}"


def _query_text(value: QueryValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
