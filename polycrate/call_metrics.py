"""Prometheus metrics of every HTTP call the workers make to an external system.

The HTTP policy's adapter (polycrate.httppolicy) records each request it sends, so every client
built on it is counted, including the sessions inside python-keycloak and python-gitlab. Labels
come from small fixed sets: the system (keycloak, gitlab, harbor, argocd, polycrate-api), the HTTP
method and an outcome class. URLs, paths, names, headers and bodies never become label values,
so nothing about a tenant or a credential reaches a scrape, and cardinality stays flat.
In prefork workers the values are aggregated across processes when PROMETHEUS_MULTIPROC_DIR is
set (the worker CLI does that when it serves /metrics).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "polycrate_external_requests_total",
    "HTTP requests to external systems by system, method and outcome (success, client_error, "
    "throttled, server_error, timeout, connection_error).",
    ["system", "method", "outcome"],
)
LATENCY = Histogram(
    "polycrate_external_request_duration_seconds",
    "Time from sending a request to an external system to its response (or failure); rate-limit "
    "waits excluded.",
    ["system", "method", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def outcome_of(status_code: int) -> str:
    """The outcome class of an HTTP status."""
    if status_code == 429:
        return "throttled"
    if status_code >= 500:
        return "server_error"
    if status_code >= 400:
        return "client_error"
    return "success"


def record(system: str, method: str, outcome: str, seconds: float) -> None:
    method = method.upper() if method.upper() in METHODS else "OTHER"
    REQUESTS.labels(system, method, outcome).inc()
    LATENCY.labels(system, method, outcome).observe(seconds)
