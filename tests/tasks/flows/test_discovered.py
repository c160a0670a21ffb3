"""The building blocks of discovered CRs: merge patches, names, label values and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import BackupScheduleSpec
from tasks.flows.discovered import bounded_name, label_value, merge_patch, moment, serialized_spec


def test_merge_patch_of_equal_objects_is_empty() -> None:
    spec = {"name": "a", "source": {"name": "a", "uid": "1"}, "dns_names": ["x"]}

    assert merge_patch(spec, dict(spec)) == {}


def test_merge_patch_sets_changed_fields_and_nulls_removed_ones_at_any_depth() -> None:
    current = {"name": "a", "not_after": "2026-01-01T00:00:00Z", "source": {"name": "a", "revision": 1}}
    desired = {"name": "a", "dns_names": ["x"], "source": {"name": "a"}}

    assert merge_patch(current, desired) == {
        "not_after": None,
        "dns_names": ["x"],
        "source": {"revision": None},
    }


def test_merge_patch_replaces_lists_whole() -> None:
    assert merge_patch({"dns_names": ["a", "b"]}, {"dns_names": ["b"]}) == {"dns_names": ["b"]}


def test_short_names_stay_and_long_ones_keep_a_hash_suffix() -> None:
    long = "certmanager-" + "a" * 300

    assert bounded_name("certmanager-prod-api-tls") == "certmanager-prod-api-tls"
    assert len(bounded_name(long)) == 253
    assert bounded_name(long) != bounded_name(long + "b")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("letsencrypt-production", "letsencrypt-production"),
        ("library/nginx", "library-nginx"),
        ("-edge-", "edge"),
        ("x" * 70, "x" * 63),
    ],
)
def test_label_values_are_valid_kubernetes_label_values(text: str, value: str) -> None:
    assert label_value(text) == value


def test_timestamps_parse_to_aware_datetimes_and_absent_ones_to_none() -> None:
    assert moment("2026-01-06T14:30:00Z") == datetime(2026, 1, 6, 14, 30, tzinfo=UTC)
    assert moment(None) is None


def test_source_values_the_model_rejects_name_the_source_and_field_but_not_the_value() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        serialized_spec(
            BackupScheduleSpec,
            {"name": "daily", "schedule_cron": "", "source_velero": {"name": "daily"}},
            "Velero Schedule velero/daily",
        )

    assert str(caught.value).startswith("Velero Schedule velero/daily cannot be mirrored: schedule_cron:")
