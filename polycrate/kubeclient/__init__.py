"""The one Kubernetes client of the operator: every talk with the API server goes through here.

One concept per module, in the manner of Kopf's `_cogs/clients`, read bottom-up:

- `config`     finding credentials as kubectl does, one `ApiClient` per caller, pool sized for it;
- `errors`     one error hierarchy for every answer and every failure to get one;
- `resources`  where a kind's objects live (paths derived from `polycrate.kinds`);
- `retrying`   the one retry policy: what is resent, how long to wait, Retry-After honoured and capped;
- `api`        `KubeClient`: JSON requests through the policy;
- `watching`   watch streams (resourceVersion, bookmarks, 410 Gone as an error the caller relists on);
- `objects`    `ObjectAPI`: the typed operations the flows need (get/patch/list/create/delete by key).

The watcher, the tasks, the CLI, the sandbox and the benchmarks use these modules; nothing
above the ground floor builds a request, a path or an error of its own.
"""
