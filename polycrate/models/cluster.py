"""K8sCluster: an external Kubernetes cluster registered for an SDP (e.g. as an Argo CD target).

The object holds the API server address and a reference to a Secret with either a service
account token or a whole kubeconfig, exactly one of the two; credentials never live in the
spec. Argo CD destinations refer to a K8sCluster by name (`clusterRef`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from polycrate.models.fieldtypes import (
    PEM_MAX,
    DeletionPolicy,
    DisplayName,
    HttpURL,
    ObjectName,
    SecretKeyRef,
    SpecModel,
    Timestamp,
)
from polycrate.models.status import StatusModel

PemBundle = Annotated[str, Field(max_length=PEM_MAX)]


class SecretCredential(SpecModel):
    """A credential stored in a Secret."""

    secretRef: SecretKeyRef = Field(description="Secret name and key in the K8sCluster's namespace")


class ClusterAuthentication(SpecModel):
    """How to authenticate: a service account token or a kubeconfig, exactly one."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {"oneOf": [{"required": ["serviceAccountToken"]}, {"required": ["kubeconfig"]}]}
    }

    serviceAccountToken: SecretCredential | None = Field(
        default=None, description="bearer token of a service account"
    )
    kubeconfig: SecretCredential | None = Field(default=None, description="a complete kubeconfig file")

    @model_validator(mode="after")
    def _exactly_one_method(self) -> ClusterAuthentication:
        if (self.serviceAccountToken is None) == (self.kubeconfig is None):
            raise ValueError("needs exactly one of serviceAccountToken or kubeconfig")
        return self


class K8sClusterSpec(SpecModel):
    """An external cluster: where its API server is and how to authenticate."""

    sdp: ObjectName = Field(description="name of a SoftwareDeliveryPlatform")
    displayName: DisplayName | None = Field(default=None, description="human-readable name")
    apiServer: HttpURL = Field(description="API server URL, e.g. https://api.prod.example.com:6443")
    authentication: ClusterAuthentication = Field(
        description="serviceAccountToken or kubeconfig Secret reference"
    )
    caCertificate: PemBundle | None = Field(
        default=None, description="PEM CA bundle of the API server; absent = system trust store"
    )
    deletionPolicy: DeletionPolicy = Field(
        default="Delete",
        description="Delete (default) unregisters the cluster from Argo CD; Orphan leaves it registered",
    )


class K8sClusterStatus(StatusModel):
    """What the operator learned about the cluster and where it registered it."""

    kubernetesVersion: str | None = Field(default=None, description="server version, e.g. v1.32.1")
    argoCDClusterRegistered: bool | None = Field(
        default=None, description="the cluster is registered in Argo CD"
    )
    lastConnectedAt: Timestamp | None = Field(default=None, description="last successful connection")
