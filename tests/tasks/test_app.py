"""The Celery app: delivery guarantees, routing and settings-driven broker options."""

from __future__ import annotations

import pytest

from polycrate.settings import Settings
from tasks.app import RECONCILE_TASK_NAME, create_app, route_task
from tasks.routing import QUEUES


def test_tasks_are_acknowledged_late_and_requeued_when_their_process_dies() -> None:
    conf = create_app(Settings()).conf

    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]


def test_visibility_timeout_comes_from_settings_and_production_keeps_it_far_above_the_time_limit() -> None:
    production = Settings()
    conf = create_app(Settings(visibility_timeout_seconds=3)).conf

    assert conf.broker_transport_options["visibility_timeout"] == 3
    assert production.visibility_timeout_seconds > 10 * production.reconcile_time_limit_seconds
    assert production.visibility_timeout_seconds > 10 * production.retry_cap_seconds


def test_app_consumes_one_queue_per_system_plus_default() -> None:
    conf = create_app(Settings()).conf

    assert sorted(queue.name for queue in conf.task_queues) == sorted(QUEUES)
    assert conf.task_default_queue == "default"


@pytest.mark.parametrize(
    ("key", "queue"),
    [
        ("HarborProject/polycrate/shared-images", "harbor"),
        ("Contact/polycrate/john-doe", "keycloak"),
        ("Organization/polycrate/acme-corp", "default"),
        ("Node//node-1", "polycrate-api"),
    ],
)
def test_reconcile_of_a_key_is_routed_by_its_kind(key: str, queue: str) -> None:
    assert route_task(RECONCILE_TASK_NAME, [key], {}, {}) == {"queue": queue}


def test_broker_url_comes_from_settings() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:6390/3"))

    assert app.conf.broker_url == "redis://127.0.0.1:6390/3"
