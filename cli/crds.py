"""`polycrate operator crds` and `install-crds`: the CRDs, printed or applied to a cluster.

Both commands render from the models (polycrate.crds), so what they print or install is what
the operator validates against. install-crds is idempotent (created / updated / unchanged per
CRD) and returns only once every CRD is Established, so `kubectl apply -f examples/` can follow
immediately. Every failure a user can fix is one line and exit code 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from cli.root import CliError, operator
from polycrate.crds import apply_crd, crd_manifests, render_yaml, wait_established, write_crds
from polycrate.errors import PolycrateError
from polycrate.kubeclient.config import kubeconfig_available, load_api_client, server_url
from polycrate.models import KINDS, KindInfo, UnknownKindError, kind_info

KIND_HELP = "Only this kind (kind, plural, singular or short name, e.g. Organization or org); repeatable."


def _selected_kinds(names: tuple[str, ...]) -> list[KindInfo]:
    if not names:
        return list(KINDS.values())
    selected: list[KindInfo] = []
    for name in names:
        try:
            info = kind_info(name)
        except UnknownKindError as exc:
            raise CliError(str(exc)) from None
        if info not in selected:
            selected.append(info)
    return selected


@operator.command("crds")
@click.option("--kind", "kinds", multiple=True, metavar="KIND", help=KIND_HELP)
@click.option("--list", "list_only", is_flag=True, help="List the CRDs (name, kind, short names, scope).")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one <plural>.polycrate.io.yaml per CRD into this directory instead of printing.",
)
def crds(kinds: tuple[str, ...], list_only: bool, output_dir: Path | None) -> None:
    """Print the polycrate.io CustomResourceDefinitions as YAML.

    \b
    polycrate operator crds | kubectl apply -f -
    polycrate operator crds --kind Organization
    polycrate operator crds --output-dir ./crds/
    polycrate operator crds --list
    """
    selected = _selected_kinds(kinds)
    if list_only:
        rows = [("NAME", "KIND", "SHORTNAMES", "SCOPE")]
        rows += [
            (
                info.crd_name,
                info.kind,
                ",".join(info.short_names),
                "Namespaced" if info.namespaced else "Cluster",
            )
            for info in selected
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            click.echo(
                "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )
        return
    if output_dir is not None:
        try:
            written = write_crds(output_dir, selected)
        except OSError as exc:
            raise CliError(f"cannot write to {output_dir}: {exc.strerror or exc}") from None
        for path in written:
            click.echo(str(path))
        return
    click.echo(render_yaml(crd_manifests(selected)), nl=False)


@operator.command("install-crds")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).",
)
@click.option("--context", help="Kubeconfig context to use (default: the current context).")
@click.option("--kind", "kinds", multiple=True, metavar="KIND", help=KIND_HELP)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compare with the cluster and print what would change, writing nothing. "
    "Without any Kubernetes configuration it lists the CRDs that would be applied.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for each CRD to become Established.",
)
def install_crds(
    kubeconfig: Path | None, context: str | None, kinds: tuple[str, ...], dry_run: bool, timeout: float
) -> None:
    """Create or update the polycrate.io CRDs in a cluster and wait until they are Established.

    \b
    polycrate operator install-crds
    polycrate operator install-crds --kubeconfig ~/.kube/admin.yaml
    polycrate operator install-crds --dry-run
    """
    manifests = crd_manifests(_selected_kinds(kinds))
    if not click.get_current_context().find_root().params.get("debug"):
        # urllib3 logs each connection retry as a warning; the one-line error below says it all.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    if dry_run and context is None and not kubeconfig_available(kubeconfig):
        click.echo("no Kubernetes configuration found: listing what would be applied, not compared", err=True)
        for manifest in manifests:
            click.echo(
                f"customresourcedefinition.apiextensions.k8s.io/{manifest['metadata']['name']} (dry run)"
            )
        return
    try:
        api_client = load_api_client(kubeconfig, context)
        with api_client:
            results = []
            for manifest in manifests:
                result = apply_crd(api_client, manifest, dry_run=dry_run)
                click.echo(str(result))
                results.append(result)
            if dry_run:
                return
            for result in results:
                wait_established(api_client, result.name, timeout=timeout)
            click.echo(f"{len(results)} CustomResourceDefinitions established on {server_url(api_client)}")
    except PolycrateError as exc:
        raise CliError(str(exc)) from None
