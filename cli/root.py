"""The `polycrate` command line: the root group and the `operator` group.

Each command lives in its own module under `cli` and registers itself on
`operator`. Errors a user can act on are raised as `CliError` (or any PolycrateError) and
printed as one line with a non-zero exit; `--debug` shows the traceback instead. Long-running
commands stop cleanly on Ctrl-C and SIGTERM (`stop_on_signals`, `serve_until_stopped`).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Protocol

import click


class CliError(click.ClickException):
    """One line for the user, exit code 1."""

    def show(self, file=None) -> None:  # noqa: ARG002 - click's signature
        click.echo(f"error: {self.format_message()}", err=True)


class _FriendlyGroup(click.Group):
    """Turns unexpected exceptions into one line unless --debug was given."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # `polycrate operator crds | head`: the reader left; that is not an error.
            sys.stderr.close()
            ctx.exit(0)
        except Exception as exc:  # the last line of defence for the user's terminal
            if ctx.find_root().params.get("debug"):
                raise
            raise CliError(f"{type(exc).__name__}: {exc}") from exc


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:  # noqa: ARG001 - signal handler
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Turn SIGTERM (docker stop, kill) and SIGINT into KeyboardInterrupt, so long-running commands
    shut down cleanly; SIGINT explicitly, since a process started in the background ignores it."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)


class Server(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def serve_until_stopped(
    server: Server, *, cannot_start: str, announce: Callable[[], None], stopping: str
) -> None:
    """Start `server`, `announce` where it listens, and serve until Ctrl-C or SIGTERM; stop it on
    every way out. A failure to bind (port in use) is one line, `cannot_start: <reason>`."""
    try:
        server.start()
    except OSError as exc:
        raise CliError(f"{cannot_start}: {exc}") from exc
    stop_on_signals()
    try:
        announce()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo(stopping, err=True)
    finally:
        server.stop()


@click.group(cls=_FriendlyGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Polycrate command line."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.group(cls=_FriendlyGroup)
def operator() -> None:
    """The Polycrate operator: CRDs, watcher, workers, emulators and sandbox."""
