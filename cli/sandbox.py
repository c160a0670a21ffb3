"""`polycrate operator sandbox`: the newcomer's first command.

Starts the emulated cluster and systems, Redis, the watcher and workers, applies the spec's
examples and shows them reach Ready; then keeps everything running (until Ctrl-C) so the user
can explore it with kubectl and the systems' own clients. `--exit-when-ready` makes it a
smoke test: exit 0 once everything is reconciled, 1 if not within `--timeout`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from cli.root import CliError, operator, stop_on_signals


@operator.command("sandbox")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sandbox"),
    show_default=True,
    help="Where the kubeconfig, the emulators' state file and the logs go.",
)
@click.option("--workers", type=click.IntRange(1), default=32, show_default=True, help="Worker threads.")
@click.option(
    "--timeout", type=click.FloatRange(1), default=120, show_default=True, help="Seconds to reach Ready."
)
@click.option(
    "--latency-ms", type=click.FloatRange(0), default=0, show_default=True, help="Emulated latency."
)
@click.option("--redis-url", default=None, help="Use this Redis instead of starting a local redis-server.")
@click.option("--exit-when-ready", is_flag=True, help="Stop once everything is reconciled (smoke test).")
def sandbox(
    workdir: Path,
    workers: int,
    timeout: float,
    latency_ms: float,
    redis_url: str | None,
    exit_when_ready: bool,
) -> None:
    """Run the whole operator against emulated Kubernetes, Keycloak, GitLab, Harbor, Argo CD."""
    from sandbox.demo import Sandbox, SandboxOptions

    options = SandboxOptions(
        workdir=workdir, workers=workers, timeout=timeout, latency_ms=latency_ms, redis_url=redis_url
    )
    stop_on_signals()
    with Sandbox(options, echo=click.echo) as demo:
        try:
            try:
                demo.start()
            except RuntimeError as exc:
                raise CliError(str(exc)) from None
            click.echo("waiting for every object to be reconciled ...")
            started = time.monotonic()
            report = demo.wait_until_reconciled()
            for obj in report.objects:
                mark = "✓" if obj.settled else "✗"
                where = f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name
                detail = f"  {obj.message}" if obj.message and not obj.settled else ""
                click.echo(f"  {mark} {obj.kind:<26} {where:<36} {obj.phase or '-'}{detail}")
            env = {**os.environ, "KUBECONFIG": str(report.kubeconfig), "REDIS_URL": demo.redis_url}
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "operator",
                    "status",
                    "--kubeconfig",
                    str(report.kubeconfig),
                ],
                env=env,
                check=False,
            )
            if not report.ready:
                raise CliError(
                    f"not every object reached Ready within {timeout:.0f}s; see {report.operator_log}"
                )
            click.echo(f"all {len(report.objects)} objects reconciled in {time.monotonic() - started:.1f}s")
            if exit_when_ready:
                return
            click.echo(
                "\nThe sandbox is running. In another shell:\n"
                f"  export KUBECONFIG={report.kubeconfig}\n"
                "  kubectl get sdp,org,ct,cg,glg,hp,acp,k8sc -n polycrate\n"
                f"  cat {report.state_file}   # URLs and credentials of the emulated systems\n"
                f"  open {demo.flower_url}   # Flower: every reconcile task (credentials in the state file)\n"
                "Ctrl-C stops everything."
            )
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopping the sandbox", err=True)
