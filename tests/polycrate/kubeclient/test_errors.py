"""One error hierarchy: every answer sorted for the retry policy and worded for the user."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from polycrate.errors import PermanentError, TransientError
from polycrate.kubeclient.config import load_api_client
from polycrate.kubeclient.errors import (
    Conflict,
    Forbidden,
    Gone,
    KubeClientError,
    KubeError,
    KubeUnreachableError,
    NotFound,
    ServerError,
    TooManyRequests,
    Unauthorized,
    event_error,
    retry_after,
    status_details,
    status_error,
    translate_api_errors,
)


def status(reason: str = "", message: str = "") -> bytes:
    return json.dumps({"kind": "Status", "reason": reason, "message": message}).encode()


@pytest.mark.parametrize(
    ("code", "cls", "transient"),
    [
        (401, Unauthorized, False),
        (403, Forbidden, False),
        (404, NotFound, False),
        (409, Conflict, True),
        (410, Gone, False),
        (422, KubeClientError, False),
        (400, KubeClientError, False),
        (429, TooManyRequests, True),
        (408, ServerError, True),
        (500, ServerError, True),
        (503, ServerError, True),
        (504, ServerError, True),
    ],
)
def test_each_status_has_its_error_and_is_transient_or_permanent(
    code: int, cls: type, transient: bool
) -> None:
    error = status_error(code, status(), what="GET /api/v1/pods")
    assert type(error) is cls and isinstance(error, KubeError)
    assert isinstance(error, TransientError) is transient
    assert isinstance(error, PermanentError) is not transient
    assert error.code == error.status_code == code


def test_the_message_says_what_failed_and_what_the_server_said() -> None:
    error = status_error(
        422,
        status("Invalid", 'Organization.polycrate.io "x" is invalid: spec.sdp: Required value'),
        what="POST /apis/polycrate.io/v1alpha1/namespaces/polycrate/organizations",
    )
    assert str(error) == (
        "POST /apis/polycrate.io/v1alpha1/namespaces/polycrate/organizations: 422 Invalid: "
        'Organization.polycrate.io "x" is invalid: spec.sdp: Required value'
    )
    assert error.reason == "Invalid"


def test_a_conflict_keeps_the_server_s_reason() -> None:
    assert status_error(409, status("AlreadyExists"), what="POST x").reason == "AlreadyExists"
    assert status_error(409, b"", what="PUT x").reason == "Conflict"


def test_forbidden_says_where_the_permission_is_granted() -> None:
    error = status_error(403, status("Forbidden", 'secrets is forbidden: User "x" cannot list'), what="GET s")
    assert error.reason == "Forbidden" and "deploy/rbac.yaml" in str(error)


def test_retry_after_is_carried_by_429_and_503() -> None:
    assert status_error(429, b"", what="GET x", headers={"Retry-After": "3"}).retry_after == 3.0
    assert status_error(503, b"", what="GET x", headers={"Retry-After": "1"}).retry_after == 1.0
    assert status_error(503, b"", what="GET x").retry_after is None


def test_a_watch_error_event_becomes_the_same_error() -> None:
    gone = event_error(
        {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}, what="watch p"
    )
    assert isinstance(gone, Gone) and str(gone) == "watch p: 410 Expired: too old"
    assert isinstance(event_error({"code": 500}, what="watch p"), ServerError)


def test_status_details_reads_reason_and_message_and_survives_garbage() -> None:
    assert status_details(
        b'{"kind":"Status","reason":"Conflict","message":"the object has been modified"}'
    ) == ("Conflict", "the object has been modified")
    assert status_details(b"") == ("", "")
    assert status_details(b"<html>bad gateway</html>") == ("", "<html>bad gateway</html>")


def test_retry_after_takes_seconds_and_ignores_garbage() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    assert retry_after(None) is None


# --- calls through the generated client (CRD installation) ------------------------------------------


def api_exception(status_code: int, message: str = "", headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status_code, reason="X")
    exc.body = json.dumps({"kind": "Status", "message": message}) if message else None
    exc.headers = headers
    return exc


def test_generated_client_failures_become_the_same_errors(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    with pytest.raises(TooManyRequests) as caught, translate_api_errors(api_client, "list pods"):
        raise api_exception(429, headers={"Retry-After": "3"})
    assert caught.value.retry_after == 3.0
    with (
        pytest.raises(KubeClientError) as invalid,
        translate_api_errors(api_client, "create Organization p/x"),
    ):
        raise api_exception(422, 'Organization.polycrate.io "x" is invalid: spec.sdp: Required value')
    assert str(invalid.value) == (
        "cannot create Organization p/x: 422 Invalid: "
        'Organization.polycrate.io "x" is invalid: spec.sdp: Required value'
    )


def test_unreachable_server_is_transient_with_the_socket_reason(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "a", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "a", "context": {"cluster": "a", "user": "u"}}],
                "current-context": "a",
            }
        )
    )
    api_client = load_api_client(kubeconfig)
    api_client.configuration.retries = 0
    with pytest.raises(KubeUnreachableError) as caught, translate_api_errors(api_client, "list namespaces"):
        client.CoreV1Api(client.ApiClient(api_client.configuration)).list_namespace(_request_timeout=(1, 1))
    assert (
        str(caught.value)
        == f"cannot reach the Kubernetes API at http://127.0.0.1:{port} to list namespaces: Connection refused"
    )
    assert isinstance(caught.value, TransientError)
