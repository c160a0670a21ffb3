"""`polycrate operator apply-examples`: the sandbox's examples, applied to a running stack.

The one-shot step of docker-compose: once the emulated cluster answers, its CRDs are served
and the emulators have written their state file, it applies `sandbox/manifests/` (the spec's
examples) with the SDP pointed at those emulators and the Secrets holding their credentials,
so the watcher and workers of the stack have something to reconcile. Waiting is bounded by
`--timeout`; what was still missing then is said in one line.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from cli.options import emulator_state_option, kubeconfig_option
from cli.root import CliError, operator


@operator.command("apply-examples")
@kubeconfig_option
@emulator_state_option(
    "The emulators' state file (URLs and credentials), as `polycrate operator emulators` writes it."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0),
    default=120,
    show_default=True,
    help="Seconds to wait for the kubeconfig, the CRDs and the state file.",
)
def apply_examples(kubeconfig: str | None, state_file: Path, timeout: float) -> None:
    """Apply the sandbox's example resources, pointed at running emulators."""
    from kubernetes.client import ApiextensionsV1Api

    from polycrate.crds import crd_manifests
    from polycrate.errors import PolycrateError
    from polycrate.kubeclient.config import load_api_client
    from sandbox.demo import apply_examples as apply_to_cluster

    wanted = {crd["metadata"]["name"] for crd in crd_manifests()}
    deadline = time.monotonic() + timeout
    missing = "the state file"
    while True:
        try:
            if state_file.exists():
                missing = "the cluster"
                api_client = load_api_client(kubeconfig)
                served = {
                    crd.metadata.name
                    for crd in ApiextensionsV1Api(api_client).list_custom_resource_definition().items
                }
                missing = f"CRDs {', '.join(sorted(wanted - served))}"
                if wanted <= served:
                    break
        except (PolycrateError, OSError, ValueError) as exc:
            missing = f"{missing} ({exc})"
        except Exception as exc:  # the API server is still starting
            missing = f"{missing} ({type(exc).__name__})"
        if time.monotonic() > deadline:
            raise CliError(f"not ready to apply the examples after {timeout:.0f}s: waiting for {missing}")
        time.sleep(1)
    applied = apply_to_cluster(api_client, state_file)
    click.echo(f"applied {len(applied)} example objects")
