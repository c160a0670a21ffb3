"""The watcher: list-watches the cluster and enqueues object keys for the workers, nothing more.

`runner.Watcher` wires the pieces: `sources` (what is watched), `informer` (one list-watch loop
per source), `enqueuer` (scope, change detection, KeyQueue), `filters` (OperatorConfig),
`resync`, `leader` (Lease), `probes` and `metrics`. It holds no business logic and no objects.
"""
