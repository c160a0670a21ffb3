"""The per-kind flows: what a reconcile does in the external systems for each custom resource.

Each module exposes `handlers()`; `tasks.registration` imports them, and their handlers
replace the generic one (validate, finalize, report) of their kinds. Tenancy flows drive
Keycloak, GitLab, Harbor and Argo CD through `workers/`; discovery flows map cluster resources
to polycrate.io objects and sync those to the Polycrate API.
"""
