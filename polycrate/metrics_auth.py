"""Bearer-token protection of /metrics, for clusters where anyone may reach a pod's port.

`--metrics-token-file PATH` (watcher and worker) makes /metrics answer 401 unless the request
carries `Authorization: Bearer <the file's content>`; Prometheus sends it with
`authorization: {credentials_file: ...}` in its scrape config. The file (a mounted Secret) is
read at every scrape, so a rotated Secret takes effect without a restart, and compared in
constant time. A missing or empty file refuses every scrape: a broken mount must not open the
endpoint. The probes (/healthz, /readyz) stay open for the kubelet; they reveal nothing.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class MetricsToken:
    """The expected bearer token, read from `path` whenever a scrape is checked."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def allows(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header value carries the token."""
        try:
            expected = self.path.read_text().strip()
        except OSError as exc:
            log.warning("metrics token file %s unreadable (%s); refusing the scrape", self.path, exc.strerror)
            return False
        scheme, _, given = (authorization or "").partition(" ")
        if not expected or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), expected.encode())
