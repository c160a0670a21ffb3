"""`polycrate operator kube-emulator`: the emulated Kubernetes API as a standalone process.

It serves until Ctrl-C and writes a kubeconfig (context `polycrate-emulator`, plain HTTP, no
credentials) only once the server answers, so a script may wait for the file and then run
kubectl, the operator or its own client against it. All state is in memory and is gone when
the process ends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from cli.root import operator, serve_until_stopped
from emulators.kubernetes import KubeEmulator


@operator.command("kube-emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port; 0 picks a free one."
)
@click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the kubeconfig (default: a new file in the temp directory).",
)
@click.option(
    "--advertise-url",
    default=None,
    help="Server URL written into the kubeconfig (e.g. http://kube:6443 in docker-compose).",
)
@click.option(
    "--latency-ms", type=click.IntRange(0), default=0, show_default=True, help="Delay added to every request."
)
@click.option(
    "--watch-history",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Events kept for watches; older resourceVersions get 410 Gone.",
)
def kube_emulator(
    host: str,
    port: int,
    kubeconfig_out: Path | None,
    advertise_url: str | None,
    latency_ms: int,
    watch_history: int,
) -> None:
    """Serve an emulated Kubernetes API (for kubectl, the operator and tests) until Ctrl-C."""
    emulator = KubeEmulator(host=host, port=port, latency_ms=latency_ms, watch_history=watch_history)

    def announce() -> None:
        out = kubeconfig_out or Path(tempfile.mkdtemp(prefix="polycrate-kube-")) / "kubeconfig"
        path = emulator.write_kubeconfig(out, server=advertise_url)
        click.echo(f"Kubernetes API emulator listening on {emulator.url}")
        click.echo(f"kubeconfig: {path}  (export KUBECONFIG={path})", nl=True)

    serve_until_stopped(
        emulator,
        cannot_start=f"cannot serve the Kubernetes emulator on {host}:{port}",
        announce=announce,
        stopping="stopping the Kubernetes API emulator",
    )
