"""`polycrate operator plan`: what a reconcile would create, change or delete, before it does.

`plan -f FILE` plans each polycrate.io object in the file as if it were applied (its spec over the
live object's status and identity, or as a new object); `plan KIND/NAME -n NS` plans the live
object. The plan runs the workers' own steps with writes recorded instead of made (see
tasks/planning.py), prints per object and system what would change, and exits like
`terraform plan -detailed-exitcode`: 0 no changes, 2 changes, 1 an error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from cli.root import CliError, operator
from polycrate.errors import PolycrateError
from polycrate.keys import ObjectKey
from polycrate.models import GROUP, KINDS
from polycrate.settings import Settings
from tasks.context import WorkerContext
from tasks.planning import PlanResult, merged_object, plan
from tasks.registration import build_registry

EXIT_NO_CHANGES, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _kind(text: str) -> str:
    """`Organization`, `organization`, `organizations`, `org` or `organizations.polycrate.io` → kind."""
    wanted = text.lower().removesuffix(f".{GROUP}")
    for info in KINDS.values():
        if wanted in {info.kind.lower(), info.plural, info.singular, *info.short_names}:
            return info.kind
    raise CliError(f'unknown kind "{text}" (use e.g. Organization or org)')


def _objects_in(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not YAML: {exc}") from None
    return [doc for doc in documents if str(doc.get("apiVersion", "")).startswith(f"{GROUP}/")]


@operator.command("plan")
@click.argument("target", required=False)
@click.option("-f", "--filename", "filename", help="YAML file of the objects to plan ('-' for stdin).")
@click.option("-n", "--namespace", default=None, help="Namespace (default: the object's, else 'default').")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None, help="Kubeconfig path.")
def plan_command(
    target: str | None, filename: str | None, namespace: str | None, kubeconfig: str | None
) -> None:
    """Show what a reconcile would do in Keycloak, GitLab, Harbor and Argo CD, writing nothing.

    Exit code 0: no changes; 2: changes; 1: an error."""
    if bool(target) == bool(filename):
        raise CliError("name either KIND/NAME or -f FILE")
    if not click.get_current_context().find_root().params.get("debug"):
        # The steps' own INFO lines ("created …") would read as if something had been done.
        logging.getLogger().setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if kubeconfig:
            settings = settings.model_copy(update={"kubeconfig": str(Path(kubeconfig).expanduser())})
        ctx = WorkerContext(settings)
        registry = build_registry()
        results = [
            plan(ctx, key, obj, registry=registry) for key, obj in _targets(ctx, target, filename, namespace)
        ]
    except PolycrateError as exc:
        raise CliError(str(exc)) from exc
    if results:
        click.echo("\n\n".join(result.render() for result in results))
    else:
        click.echo(f"{filename}: no polycrate.io objects, nothing to plan")
    sys.exit(_exit_code(results))


def _targets(
    ctx: WorkerContext, target: str | None, filename: str | None, namespace: str | None
) -> list[tuple[ObjectKey, dict[str, Any]]]:
    if target:
        kind_text, _, name = target.partition("/")
        if not name:
            raise CliError(f'"{target}": use KIND/NAME, e.g. organization/acme-corp')
        kind = _kind(kind_text)
        key = ObjectKey(kind, (namespace or "default") if KINDS[kind].namespaced else "", name)
        live = ctx.objects.get(key)
        if live is None:
            raise CliError(f"{key.describe()} not found")
        return [(key, live)]
    assert filename is not None
    targets = []
    for doc in _objects_in(filename):
        kind = _kind(str(doc.get("kind", "")))
        metadata = doc.setdefault("metadata", {})
        ns = (namespace or metadata.get("namespace") or "default") if KINDS[kind].namespaced else ""
        if ns:
            metadata["namespace"] = ns
        key = ObjectKey(kind, ns, str(metadata.get("name", "")))
        targets.append((key, merged_object(doc, ctx.objects.get(key))))
    return targets


def _exit_code(results: list[PlanResult]) -> int:
    if any(result.error is not None for result in results):
        return EXIT_ERROR
    return EXIT_CHANGES if any(result.changes for result in results) else EXIT_NO_CHANGES
