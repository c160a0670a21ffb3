"""The emulator as a server: lifecycle knobs, raw HTTP contract details, discovery and OpenAPI.

These need the emulator itself (restart, latency, reset) or speak raw HTTP to pin down wire
details clients depend on, so they are skipped against a real cluster.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from emulators.kubernetes import CONTEXT_NAME, KubeEmulator
from tests.emulators.kubernetes.conftest import WIDGET_CRD

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


def call(
    emulator: KubeEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    accept: str = "application/json",
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        emulator.url + path,
        data=data,
        method=method,
        headers={"Accept": accept, "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def install_widgets(emulator: KubeEmulator) -> None:
    status, _, _ = call(
        emulator,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        yaml.safe_load(WIDGET_CRD.read_text()),
    )
    assert status == 201


def create_config_map(emulator: KubeEmulator, name: str, namespace: str = "default") -> dict[str, Any]:
    status, _, body = call(
        emulator, "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": name}}
    )
    assert status == 201
    return body


# --- lifecycle ------------------------------------------------------------------------------


def test_restart_keeps_objects_port_and_revisions_and_cuts_watch_streams(kube_emulator: KubeEmulator) -> None:
    created = create_config_map(kube_emulator, "survivor")
    port = kube_emulator.port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "GET",
        f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={created['metadata']['resourceVersion']}",
    )
    stream = connection.getresponse()
    assert stream.status == 200

    kube_emulator.restart()

    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        stream.read()
    connection.close()
    assert kube_emulator.port == port
    status, _, served = call(kube_emulator, "GET", "/api/v1/namespaces/default/configmaps/survivor")
    assert status == 200
    assert served["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert int(create_config_map(kube_emulator, "after")["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )


def test_restart_without_keeping_state_comes_back_empty(kube_emulator: KubeEmulator) -> None:
    create_config_map(kube_emulator, "gone-after-restart")

    kube_emulator.restart(keep_state=False)

    status, _, _ = call(kube_emulator, "GET", "/api/v1/namespaces/default/configmaps/gone-after-restart")
    assert status == 404


def test_a_restarting_emulator_refuses_connections_for_a_moment(kube_emulator: KubeEmulator) -> None:
    kube_emulator.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(kube_emulator.url + "/healthz", timeout=2)

    kube_emulator.start()
    assert urllib.request.urlopen(kube_emulator.url + "/healthz", timeout=2).status == 200


def test_latency_injection_delays_every_request(kube_emulator: KubeEmulator) -> None:
    kube_emulator.latency_ms = 150

    started = time.monotonic()
    call(kube_emulator, "GET", "/api/v1/namespaces")
    elapsed = time.monotonic() - started

    assert elapsed >= 0.15


def test_reset_drops_objects_and_crds_but_keeps_the_default_namespaces(kube_emulator: KubeEmulator) -> None:
    install_widgets(kube_emulator)
    create_config_map(kube_emulator, "temporary")

    kube_emulator.reset()

    _, _, namespaces = call(kube_emulator, "GET", "/api/v1/namespaces")
    assert [ns["metadata"]["name"] for ns in namespaces["items"]] == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
    ]
    assert call(kube_emulator, "GET", "/api/v1/namespaces/default/configmaps/temporary")[0] == 404
    assert call(kube_emulator, "GET", "/apis/testing.polycrate.io/v1")[0] == 404


def test_the_kubeconfig_works_with_the_python_client_loader(kube_emulator: KubeEmulator, tmp_path) -> None:
    path = kube_emulator.write_kubeconfig(tmp_path / "nested" / "kubeconfig")

    written = yaml.safe_load(Path(path).read_text())
    assert written["current-context"] == CONTEXT_NAME
    with kubernetes.config.new_client_from_config(config_file=path) as client:
        version = kubernetes.client.VersionApi(client).get_code()
    assert (version.major, version.minor) == ("1", "32")


# --- wire details ---------------------------------------------------------------------------


def test_errors_are_status_objects_with_reason_and_code(kube_emulator: KubeEmulator) -> None:
    status, headers, body = call(kube_emulator, "GET", "/api/v1/namespaces/default/configmaps/missing")

    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "group": "", "kind": "configmaps"},
        "code": 404,
    }


def test_an_unknown_path_is_a_404_status(kube_emulator: KubeEmulator) -> None:
    status, _, body = call(kube_emulator, "GET", "/apis/nowhere.example.com/v1/things")

    assert status == 404 and body["reason"] == "NotFound"


def test_a_json_patch_that_is_not_a_list_is_400(kube_emulator: KubeEmulator) -> None:
    create_config_map(kube_emulator, "cfg")

    status, _, body = call(
        kube_emulator,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg",
        {"data": {"a": "1"}},
        content_type="application/json-patch+json",
    )

    assert status == 400
    assert body["message"] == "json: cannot unmarshal object into Go value of type jsonpatch.Patch"


def test_a_table_is_served_when_accept_asks_for_one(kube_emulator: KubeEmulator) -> None:
    create_config_map(kube_emulator, "cfg")

    _, _, listed = call(kube_emulator, "GET", "/api/v1/namespaces/default/configmaps", accept=TABLE)

    assert listed["kind"] == "Table" and listed["apiVersion"] == "meta.k8s.io/v1"
    assert [column["name"] for column in listed["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert listed["rows"][0]["cells"][:2] == ["cfg", 0]
    assert listed["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_partial_object_metadata_lists_carry_only_metadata(kube_emulator: KubeEmulator) -> None:
    create_config_map(kube_emulator, "cfg")

    _, _, listed = call(
        kube_emulator,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        accept="application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    )

    assert listed["kind"] == "PartialObjectMetadataList"
    assert set(listed["items"][0]) == {"kind", "apiVersion", "metadata"}


def test_warnings_about_dropped_fields_travel_in_warning_headers(kube_emulator: KubeEmulator) -> None:
    install_widgets(kube_emulator)
    body = {
        "apiVersion": "testing.polycrate.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red", "bogus": 1},
    }

    status, headers, created = call(
        kube_emulator, "POST", "/apis/testing.polycrate.io/v1/namespaces/default/widgets", body
    )

    assert status == 201 and "bogus" not in created["spec"]
    assert headers["Warning"] == '299 - "unknown field \\"spec.bogus\\""'


def test_aggregated_discovery_is_served_when_asked_and_legacy_otherwise(kube_emulator: KubeEmulator) -> None:
    install_widgets(kube_emulator)

    _, headers, aggregated = call(kube_emulator, "GET", "/apis", accept=AGGREGATED)
    _, _, legacy = call(kube_emulator, "GET", "/apis")

    assert headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    testing = next(item for item in aggregated["items"] if item["metadata"]["name"] == "testing.polycrate.io")
    resource = testing["versions"][0]["resources"][0]
    assert (
        resource["resource"] == "widgets"
        and resource["shortNames"] == ["wg"]
        and resource["scope"] == "Namespaced"
    )
    assert resource["subresources"][0]["subresource"] == "status"
    assert legacy["kind"] == "APIGroupList"
    assert "testing.polycrate.io" in [group["name"] for group in legacy["groups"]]


def test_openapi_v3_declares_field_validation_for_every_patchable_kind(kube_emulator: KubeEmulator) -> None:
    install_widgets(kube_emulator)

    _, _, root = call(kube_emulator, "GET", "/openapi/v3")
    _, _, document = call(
        kube_emulator, "GET", root["paths"]["apis/testing.polycrate.io/v1"]["serverRelativeURL"]
    )

    patch = document["paths"]["/apis/testing.polycrate.io/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "testing.polycrate.io",
        "version": "v1",
        "kind": "Widget",
    }
    assert {"name": "fieldValidation", "in": "query"}.items() <= patch["parameters"][2].items()
    assert call(kube_emulator, "GET", "/openapi/v2")[0] == 404


def test_openapi_hashes_change_when_a_crd_is_installed(kube_emulator: KubeEmulator) -> None:
    _, _, before = call(kube_emulator, "GET", "/openapi/v3")
    install_widgets(kube_emulator)
    _, _, after = call(kube_emulator, "GET", "/openapi/v3")

    assert "apis/testing.polycrate.io/v1" not in before["paths"]
    assert "apis/testing.polycrate.io/v1" in after["paths"]


def test_deleting_a_crd_deletes_its_objects_and_stops_serving_it(kube_emulator: KubeEmulator) -> None:
    install_widgets(kube_emulator)
    widgets = "/apis/testing.polycrate.io/v1/namespaces/default/widgets"
    body = {
        "apiVersion": "testing.polycrate.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red"},
    }
    assert call(kube_emulator, "POST", widgets, body)[0] == 201

    status, _, _ = call(
        kube_emulator,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.testing.polycrate.io",
    )

    assert status == 200
    assert call(kube_emulator, "GET", widgets)[0] == 404
    assert (
        call(
            kube_emulator,
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.testing.polycrate.io",
        )[0]
        == 404
    )


def test_custom_resource_put_without_resource_version_is_422(kube_emulator: KubeEmulator) -> None:
    install_widgets(kube_emulator)
    path = "/apis/testing.polycrate.io/v1/namespaces/default/widgets"
    body = {
        "apiVersion": "testing.polycrate.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red"},
    }
    call(kube_emulator, "POST", path, body)

    status, _, error = call(kube_emulator, "PUT", f"{path}/w", body)

    assert status == 422
    assert "metadata.resourceVersion: Invalid value: 0: must be specified for an update" in error["message"]


def test_deleting_a_crd_ends_the_watch_streams_of_its_resource(kube_emulator: KubeEmulator) -> None:
    install_widgets(kube_emulator)
    connection = http.client.HTTPConnection("127.0.0.1", kube_emulator.port, timeout=10)
    connection.request("GET", "/apis/testing.polycrate.io/v1/widgets?watch=true&resourceVersion=0")
    stream = connection.getresponse()

    call(
        kube_emulator,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.testing.polycrate.io",
    )

    started = time.monotonic()
    assert stream.read() == b""
    assert time.monotonic() - started < 2
    connection.close()
