"""Entry point of the `polycrate` console script.

Importing a command module registers its command on the `operator` group; one module per
command keeps each front door readable on its own.
"""

from polycrate.cli import crds  # noqa: F401
from polycrate.cli import worker  # noqa: F401
from polycrate.cli import health  # noqa: F401
from polycrate.cli import run  # noqa: F401
from polycrate.cli import status  # noqa: F401
from polycrate.cli import kube_emulator  # noqa: F401
from polycrate.cli.root import CliError, main, operator

__all__ = ["CliError", "main", "operator"]
