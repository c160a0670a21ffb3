"""An emulated Kubernetes API server for the official Python client and the real kubectl.

Usage: ``with KubeEmulator() as emu: emu.write_kubeconfig(path)``. State lives in memory;
see `server.py` for the lifecycle knobs (reset, restart, expire_history, latency_ms).
This package imports nothing of the product; the product reaches it only from the CLI,
the sandbox, tests and benchmarks.
"""

from emulators.kubernetes.server import CONTEXT_NAME, KubeEmulator

__all__ = ["CONTEXT_NAME", "KubeEmulator"]
