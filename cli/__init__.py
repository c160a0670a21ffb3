"""Entry point of the `polycrate` console script.

Importing a command module registers its command on the `operator` group; one module per
command keeps each front door readable on its own.
"""

from cli import (  # noqa: F401 - imported for their registration side effect
    apply_examples,
    crds,
    emulators,
    health,
    kube_emulator,
    plan,
    rbac,
    run,
    sandbox,
    status,
    worker,
)
from cli.root import CliError, main, operator

__all__ = ["CliError", "main", "operator"]
