"""Watch streams: events from a resourceVersion on, every read bounded, cut from any thread.

`open_watch` asks for `?watch=true` from a resourceVersion (with bookmarks when the caller
allows them) and returns a `WatchStream`. Each socket read gives up after an inactivity
timeout, so a stream that goes silent while its connection stays open raises
`InactiveStreamError` instead of hanging; a broken connection raises `KubeUnreachableError`;
an ERROR event becomes its `KubeError` (410 → `Gone`: the resourceVersion was compacted away,
the caller lists again and watches from the new list's resourceVersion). The list-watch loop
itself, with its relists and backoff, is the watcher's (`watcher.informer`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping

import urllib3

from polycrate.kubeclient.api import JSON, JsonObject, KubeClient, QueryValue
from polycrate.kubeclient.errors import InactiveStreamError, KubeUnreachableError, event_error
from polycrate.kubeclient.retrying import RetryPolicy

# Metadata only (name, labels, resourceVersion, ...): the content negotiation every API server
# since 1.15 supports; plain JSON stays acceptable so an older server still answers.
METADATA_LIST = f"{JSON};as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, {JSON}"
METADATA_WATCH = f"{JSON};as=PartialObjectMetadata;g=meta.k8s.io;v=v1, {JSON}"

BOOKMARK = "BOOKMARK"
ERROR = "ERROR"


class WatchStream:
    """One open watch response: iterate for events, `close()` from any thread to cut it.

    Iteration yields the decoded watch events (`{"type": ..., "object": {...}}`), bookmarks
    included (they carry the resourceVersion to resume from); an ERROR event is raised as its
    `KubeError`. It stops when the server ends the stream (its `timeoutSeconds` ran out).
    """

    def __init__(self, response: urllib3.BaseHTTPResponse, *, what: str = "watch"):
        self._response = response
        self._what = what
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[JsonObject]:
        for event in self._events():
            if event.get("type") == ERROR:
                raise event_error(event.get("object") or {}, what=self._what)
            yield event

    def _events(self) -> Iterator[JsonObject]:
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
            raise InactiveStreamError(f"{self._what}: watch stream silent: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._closed.is_set():
                return
            raise KubeUnreachableError(
                f"{self._what}: watch stream broke: {type(exc).__name__}: {exc}"
            ) from exc

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


def open_watch(
    client: KubeClient,
    path: str,
    *,
    resource_version: str,
    query: Mapping[str, QueryValue] | None = None,
    server_timeout: int | None = None,
    inactivity_timeout: float,
    connect_timeout: float = 10.0,
    bookmarks: bool = True,
    accept: str = JSON,
    retry: RetryPolicy | None = None,
) -> WatchStream:
    """Watch the collection at `path` from `resource_version`; each read waits at most `inactivity_timeout`.

    `server_timeout` (timeoutSeconds) lets the server end the stream; `query` adds selectors.
    Opening follows `retry` (default: the client's policy); a 410 when opening raises `Gone` as well.
    """
    params: dict[str, QueryValue] = {"resourceVersion": resource_version}
    if bookmarks:
        params["allowWatchBookmarks"] = True
    if server_timeout is not None:
        params["timeoutSeconds"] = server_timeout
    params.update(query or {})
    params["watch"] = True
    response = client.send(
        "GET", path, query=params, timeout=(connect_timeout, inactivity_timeout), accept=accept, retry=retry
    )
    return WatchStream(response, what=f"watch {path}")
