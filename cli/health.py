"""`polycrate operator health`: ask a running operator whether it is live and ready.

It reads the operator's /healthz and /readyz (the same endpoints the kubelet probes) and
prints one line: healthy, or which check failed and why. The exit code is the answer (0
healthy and ready, 1 otherwise), so scripts and CI can wait on it.
"""

from __future__ import annotations

import click
import requests

from cli.root import CliError, operator

DEFAULT_URL = "http://127.0.0.1:8081"


def _failed_checks(body: str) -> str:
    failed = [line[3:] for line in body.splitlines() if line.startswith("[-]")]
    if failed:
        return "; ".join(failed)
    lines = body.strip().splitlines()
    return lines[-1] if lines else "no details"


@operator.command("health")
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    help="Health probe address of the operator (its --health-probe-bind-address).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds per request."
)
def health(url: str, timeout: float) -> None:
    """Check that the operator at --url is live (/healthz) and ready (/readyz)."""
    base = url.rstrip("/")
    for endpoint, meaning in (("/healthz", "not live"), ("/readyz", "not ready")):
        try:
            response = requests.get(base + endpoint, timeout=timeout)
        except requests.RequestException as exc:
            raise CliError(f"operator at {base} does not answer: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise CliError(f"operator at {base} is {meaning}: {_failed_checks(response.text)}")
    click.echo(f"healthy: operator at {base} is live and ready")
