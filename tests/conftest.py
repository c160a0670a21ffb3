"""Test-wide fixtures come from plugins in tests/fixtures/, one per real thing they start.

Each plugin starts its thing (redis-server, an emulator) once per session and resets its
state between tests, so tests read as examples of use and stay fast.
"""

pytest_plugins: list[str] = [
    # one line per fixture plugin, e.g. "tests.fixtures.kube",
    "tests.fixtures.redis",
    "tests.fixtures.workers",
    "tests.fixtures.gitlab",
    "tests.fixtures.harbor",
    "tests.fixtures.argocd",
    "tests.fixtures.polycrate_api",
    "tests.fixtures.keycloak",
    "tests.fixtures.kube",
]
