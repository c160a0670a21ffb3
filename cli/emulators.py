"""`polycrate operator emulators`: the five emulated systems as one standalone process.

Serves Keycloak, GitLab, Harbor, Argo CD and the Polycrate API until Ctrl-C or SIGTERM, and
writes the state file (URLs and credentials, format in `sandbox.systems`) only once every
emulator answers, so a script can wait for the file and then use each system through its
official API with its usual client.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import requests

from cli.options import emulator_state_option
from cli.root import CliError, operator, serve_until_stopped


def wait_until_answering(urls: dict[str, str], *, timeout: float = 10.0) -> None:
    """Block until every emulator's admin endpoint answers; CliError naming the laggard."""
    deadline = time.monotonic() + timeout
    for name, url in urls.items():
        while True:
            try:
                requests.get(f"{url}/_emulator/calls", timeout=1).raise_for_status()
                break
            except requests.RequestException as exc:
                if time.monotonic() > deadline:
                    raise CliError(f"emulator {name} at {url} does not answer: {exc}") from exc
                time.sleep(0.05)


@operator.command("emulators")
@emulator_state_option("Where to write URLs and credentials once every emulator answers.")
@click.option(
    "--latency-ms", type=click.FloatRange(0), default=0, show_default=True, help="Delay per request."
)
@click.option(
    "--port-base",
    type=click.IntRange(0, 65530),
    default=0,
    show_default=True,
    help="Keycloak on P, GitLab P+1, Harbor P+2, Argo CD P+3, Polycrate API P+4; 0 = free ports.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--advertise-host", default=None, help="Host name written into the state file URLs (containers)."
)
def emulators(
    state_file: Path, latency_ms: float, port_base: int, host: str, advertise_host: str | None
) -> None:
    """Serve the emulated Keycloak, GitLab, Harbor, Argo CD and Polycrate API until Ctrl-C."""
    from sandbox.systems import EmulatedSystems

    systems = EmulatedSystems(
        host=host, port_base=port_base, latency_ms=latency_ms, advertise_host=advertise_host
    )

    def announce() -> None:
        wait_until_answering({name: server.url for name, server in systems.servers.items()})
        path = systems.write_state(state_file)
        for name, server in systems.servers.items():
            click.echo(f"{name:<14} {systems.url(name)}   (local {server.url})")
        click.echo(f"state file: {path}")

    serve_until_stopped(
        systems,
        cannot_start=f"cannot start the emulators on {host} (port base {port_base})",
        announce=announce,
        stopping="stopping the emulators",
    )
