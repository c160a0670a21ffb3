"""`polycrate operator rbac`: the ServiceAccount and RBAC objects the operator needs, as YAML.

Rendered from the permission table (polycrate.rbac), so what it prints is exactly what the
code calls. `deploy/rbac.yaml` is its output for the whole cluster; with `--namespace` it
prints the Role/RoleBinding variant for an operator that serves only those namespaces.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.root import operator
from polycrate.rbac import DEFAULT_NAMESPACE, render_yaml


@operator.command("rbac")
@click.option(
    "--operator-namespace",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="Namespace of the operator's ServiceAccount and leader Lease.",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Grant namespaced access only in NS (repeatable; match `operator run --namespace`).",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
def rbac(operator_namespace: str, namespaces: tuple[str, ...], output: Path | None) -> None:
    """Print the operator's ServiceAccount, (Cluster)Roles and bindings as YAML.

    \b
    polycrate operator rbac | kubectl apply -f -
    polycrate operator rbac --namespace team-a --namespace team-b
    """
    text = render_yaml(operator_namespace, namespaces)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
