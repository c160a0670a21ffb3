"""Prometheus metrics of the reconcile runtime, labelled by kind and outcome only.

Label values come from small fixed sets (the kinds, the outcomes), never from object names,
namespaces or error texts, so the number of series stays bounded however many tenants there
are, and nothing about a tenant leaks into a scrape. In prefork workers the values are
aggregated across processes when PROMETHEUS_MULTIPROC_DIR is set (the worker CLI does that when
it serves /metrics).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter(
    "polycrate_reconciles_total",
    "Reconcile task runs by outcome: succeeded, retrying, failed, deferred, skipped, gone.",
    ["kind", "outcome"],
)
FAILURES = Counter(
    "polycrate_reconcile_failures_total",
    "Reconciles that raised, transient (retried) or permanent (parked in Error).",
    ["kind", "outcome"],
)
RETRIES = Counter("polycrate_reconcile_retries_total", "Retries scheduled with backoff.", ["kind"])
DURATION = Histogram(
    "polycrate_reconcile_duration_seconds",
    "Time spent in handlers per reconcile.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
QUEUE_WAIT = Histogram(
    "polycrate_queue_wait_seconds",
    "Time from when a key's reconcile was due (enqueued, or its retry's time) to the start of its run.",
    ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
LOCK_LOSSES = Counter(
    "polycrate_lock_losses_total",
    "Runs whose key lock expired or could not be renewed before the fence deadline.",
    ["kind"],
)
FENCED = Counter(
    "polycrate_reconcile_fenced_total",
    "Runs stopped by the fence before a write, because their lock was lost or overdue.",
    ["kind"],
)
HEALED = Counter(
    "polycrate_healer_keys_resent_total",
    "Keys the self-healing loop re-sent, by cause: lock-expired (a dead or partitioned run), "
    "retry-due (a retry or deferral reached its time, or a failed publish is sent again), "
    "lost-task (a task that vanished with its worker before it started), "
    "requeue-due (a reconcile asked to run again at this time, e.g. a certificate threshold).",
    ["cause"],
)
SUPERSEDED = Counter(
    "polycrate_reconcile_superseded_total",
    "Runs that finished after another run had taken their key over; the key is re-added.",
    ["kind"],
)
