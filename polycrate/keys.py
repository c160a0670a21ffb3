"""The key of one watched object: what travels through Redis instead of the object itself.

A key names an object (`kind/namespace/name`) and nothing else, so a task message or a Redis
entry never carries an object body or a credential, and a worker always reads the current
object before acting (level-triggered). Discovery-source kinds that share a name with a
polycrate.io kind are group-qualified (`velero.io/Backup`), which is why `parse` splits from
the right: Kubernetes names and namespaces never contain a slash, kinds may.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ObjectKey:
    """`kind` e.g. "Organization" or "velero.io/Backup"; `namespace` is "" for cluster-scoped objects."""

    kind: str
    namespace: str
    name: str

    def __post_init__(self) -> None:
        if not self.kind or not self.name:
            raise ValueError(
                f"object key needs a kind and a name, got {self.kind!r}/{self.namespace!r}/{self.name!r}"
            )
        if "/" in self.namespace or "/" in self.name:
            raise ValueError(f"namespace and name cannot contain '/': {self.namespace!r}/{self.name!r}")

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ObjectKey:
        """Inverse of `str()`: "Organization/polycrate/acme-corp", "Node//node-1", "velero.io/Backup/velero/b1"."""
        parts = text.rsplit("/", 2)
        if len(parts) != 3:
            raise ValueError(f"not an object key (kind/namespace/name): {text!r}")
        kind, namespace, name = parts
        return cls(kind=kind, namespace=namespace, name=name)

    @property
    def namespaced(self) -> bool:
        return self.namespace != ""

    def describe(self) -> str:
        """How messages name the object: "Organization polycrate/acme-corp", "Node node-1"."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"
