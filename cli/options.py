"""Options that several commands share, declared once so their spelling and help cannot drift.

`kubeconfig_option` is the cluster to talk to; `use_kubeconfig` hands it on (resolved) to
everything the command starts, through POLYCRATE_KUBECONFIG. `log_format_option` and
`metrics_token_file_option` are the operator's and the worker's common serving options;
`emulator_state_option` is where the emulators' state file is written and read.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from polycrate.logformat import LOG_FORMATS

kubeconfig_option = click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    default=None,
    help="Kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster).",
)


def emulator_state_option(help: str):  # type: ignore[no-untyped-def]  # click's decorator type
    """`--state-file`: the emulators' URLs and credentials, written by one command, read by others."""
    return click.option(
        "--state-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path(".sandbox/emulators.json"),
        show_default=True,
        help=help,
    )


metrics_token_file_option = click.option(
    "--metrics-token-file",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="POLYCRATE_METRICS_TOKEN_FILE",
    help="Serve /metrics only to requests with 'Authorization: Bearer <this file's content>'.",
)


def log_format_option(help: str):  # type: ignore[no-untyped-def]  # click's decorator type
    """`--log-format text|json` (also from POLYCRATE_LOG_FORMAT); `help` says what it covers."""
    return click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        default="text",
        show_default=True,
        envvar="POLYCRATE_LOG_FORMAT",
        help=help,
    )


def use_kubeconfig(kubeconfig: str | None) -> None:
    """Export `--kubeconfig`, resolved, so what this command starts reads the same cluster."""
    if kubeconfig:
        os.environ["POLYCRATE_KUBECONFIG"] = str(Path(kubeconfig).expanduser().resolve())
